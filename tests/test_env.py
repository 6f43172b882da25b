"""The RL environment (model/env/, `laser env serve`) against the real demo database: an episode over
HTTP in the seed environment's contract (reset, a wrong candidate, a correct faster one, the
leaderboard, a DELETE refused with nothing changed), hostile candidates, /execute, bad requests,
the five tasks' known rewrites, task and corpus files, the command line, and the OpenEnv and TRL
shapes.

The known faster rewrites live here, not in the tasks: an agent is never shown them.
"""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from laser import cli
from model.env.episode import Environment, TaskUnavailable
from model.env.openenv import SqlAction, SqlEnvironment, SqlObservation
from model.env.server import EnvServer
from model.env.tasks import DEMO_TASKS, TaskFileError, load_tasks
from model.env.trl import SqlRewriteEnv, dataset_rows, environment_factory

ROOT = Path(__file__).resolve().parent.parent
TASK_1 = "task_1_basic_antipatterns"
FAST_1 = ("SELECT * FROM orders WHERE user_id = 5000 "
          "AND created_at >= TIMESTAMP '2024-01-01' AND created_at < TIMESTAMP '2025-01-01'")
WRONG_1 = "SELECT * FROM orders WHERE user_id = 5000"  # drops the year: more rows
KNOWN_REWRITES = {
    TASK_1: FAST_1,
    "task_2_correlated_subqueries": """
        SELECT u.id, u.email,
               count(o.id) FILTER (WHERE o.status = 'delivered') AS delivered_orders,
               sum(o.amount) FILTER (WHERE o.created_at >= TIMESTAMP '2024-01-01') AS spend_since_2024,
               max(o.amount) AS largest_order
        FROM users AS u LEFT JOIN orders AS o ON o.user_id = u.id
        WHERE u.country = 'DE'
        GROUP BY u.id, u.email""",
    "task_3_wildcard_scan": """
        SELECT e.id, e.user_id, e.page, e.created_at
        FROM events AS e
        WHERE e.created_at >= TIMESTAMPTZ '2024-02-29 00:00:00+00'
          AND e.created_at < TIMESTAMPTZ '2024-03-01 00:00:00+00'
          AND e.page LIKE '%checkout%'""",
    "task_4_implicit_join": """
        SELECT o.id, u.email, p.name, o.amount, a.product_avg
        FROM orders AS o
        JOIN users AS u ON u.id = o.user_id
        JOIN products AS p ON p.id = o.product_id
        JOIN (SELECT o2.product_id, round(avg(o2.amount), 2) AS product_avg
              FROM orders AS o2 GROUP BY o2.product_id) AS a ON a.product_id = o.product_id
        WHERE o.created_at >= TIMESTAMP '2024-12-28' AND o.amount > 1.5 * a.product_avg""",
    "task_5_window_functions": """
        SELECT s.user_id, u.email, s.events, s.purchases, s.referred_events, s.first_seen, s.last_seen
        FROM (SELECT e.user_id, count(*) AS events,
                     count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
                     count(e.referrer) AS referred_events, min(e.created_at) AS first_seen,
                     max(e.created_at) AS last_seen
              FROM events AS e
              WHERE e.created_at >= TIMESTAMPTZ '2024-01-01 00:00:00+00'
                AND e.created_at < TIMESTAMPTZ '2025-01-01 00:00:00+00'
              GROUP BY e.user_id) AS s
        JOIN users AS u ON u.id = s.user_id""",
}
HOSTILE = [
    "DELETE FROM orders WHERE user_id = 5000",
    "SELECT 1; DELETE FROM orders",
    "SELECT *, pg_sleep(2) FROM orders WHERE user_id = 5000",
    "SELECT setval('orders_id_seq', 1)",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
    "UPDATE orders SET amount = 0 WHERE user_id = 5000",
    "SELECT * FROM orders WHERE user_id = 5000 FOR UPDATE",
    "DROP TABLE orders",
]
SEED_OBSERVATION = {"task_id", "task_name", "task_description", "sql_query", "schema_info", "dialect", "difficulty",
                    "step_count", "max_steps", "issues_found_so_far", "last_execution"}
SEED_EXECUTION = {"original_ms", "optimized_ms", "speedup", "results_match", "original_rows", "optimized_rows",
                  "original_error", "optimized_error", "verdict", "explain_plan"}


def call(url: str, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def action(sql: str, **fields: Any) -> dict[str, Any]:
    return {"suggestions": [], "optimized_query": sql, "summary": "", "estimated_improvement": "",
            "approved": False, **fields}


def orders_checksum(dsn: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), sum(id), sum(amount), max(created_at), sum(user_id) FROM orders"
                           ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture(scope="module")
def url(demo_dsn: str) -> Iterator[str]:
    with EnvServer(Environment(demo_dsn), port=0) as server:
        yield server.url


# -- over HTTP ------------------------------------------------------------------------------------

def test_an_episode_reset_wrong_then_faster_leaderboard_and_a_refused_delete(url: str, demo_dsn: str) -> None:
    before = orders_checksum(demo_dsn)
    status, observation = call(url, "POST", "/reset", {"task_id": TASK_1})
    assert status == 200 and set(observation) == SEED_OBSERVATION
    assert (observation["task_id"], observation["step_count"], observation["max_steps"]) == (TASK_1, 0, 3)
    assert observation["dialect"] == "postgresql" and observation["last_execution"] is None
    assert "table public.orders" in observation["schema_info"] and "index (user_id)" in observation["schema_info"]
    assert FAST_1 not in json.dumps(observation)

    status, wrong = call(url, "POST", "/step", action(WRONG_1, suggestions=[
        {"issue_type": "non_sargable_cast", "line": 3, "description": "cast", "severity": "high", "fix": "="}]))
    assert status == 200 and not wrong["done"]
    execution = wrong["info"]["execution"]
    assert set(execution) >= SEED_EXECUTION and execution["status"] == "not_equivalent"
    assert not execution["results_match"] and execution["verdict"].startswith("wrong results")
    assert execution["original_rows"] == 24 and execution["optimized_rows"] > 24
    assert wrong["reward"]["score"] == 0.25 and wrong["reward"]["breakdown"]["laser_semantic"] == -1.5
    assert wrong["observation"]["issues_found_so_far"] == ["non_sargable_cast"]
    assert wrong["observation"]["last_execution"] == execution and wrong["observation"]["step_count"] == 1

    status, right = call(url, "POST", "/step", action(FAST_1, summary="sargable predicates"))
    assert status == 200 and not right["done"]
    execution, reward = right["info"]["execution"], right["reward"]
    assert execution["status"] == "faster" and execution["verdict"].startswith("faster, results verified equal")
    assert execution["results_match"] and execution["speedup"] > 1.0 and execution["optimized_rows"] == 24
    assert "Index" in execution["explain_plan"]
    assert reward["score"] > 0.5 and reward["breakdown"]["laser_efficiency"] > 0.0
    assert reward["breakdown"]["spa_plan"] == 1.0 and reward["breakdown"]["text"] > 0.0
    assert reward["score"] == reward["breakdown"]["verifier"]  # the summary weighs nothing by default

    status, board = call(url, "GET", "/leaderboard")
    entry = board["leaderboard"][TASK_1]
    assert status == 200 and entry["best_query"] == FAST_1 and entry["best_speedup"] > 1.0
    assert entry["best_score"] == reward["score"] and entry["correct_attempts"] >= 1

    status, hostile = call(url, "POST", "/step", action("DELETE FROM orders WHERE user_id = 5000"))
    assert status == 200 and hostile["done"]
    execution, reward = hostile["info"]["execution"], hostile["reward"]
    assert reward["score"] == 0.0 and reward["breakdown"]["reward"] == -3.0 and reward["breakdown"]["refused"] == 1.0
    assert execution["status"] == "guard_refused" and not execution["results_match"]
    assert "nothing was run" in execution["verdict"] and "DELETE" in execution["optimized_error"]
    assert orders_checksum(demo_dsn) == before

    status, error = call(url, "POST", "/step", action(FAST_1))
    assert status == 409 and "over" in error["detail"]
    status, state = call(url, "GET", "/state")
    assert state["episode_done"] and state["step_count"] == 3 and state["task_id"] == TASK_1
    assert state["cumulative_reward"] == pytest.approx(wrong["reward"]["score"] + right["reward"]["score"], abs=1e-3)


def test_hostile_candidates_get_the_lowest_reward_and_change_nothing(url: str, demo_dsn: str) -> None:
    before = orders_checksum(demo_dsn)
    call(url, "POST", "/reset", {"task_id": TASK_1})
    status, honest_error = call(url, "POST", "/grader", action("SELECT no_such_column FROM orders"))
    assert status == 200 and honest_error["execution"]["status"] == "exec_error" and honest_error["score"] > 0.0
    for sql in HOSTILE:
        status, graded = call(url, "POST", "/grader", action(sql))
        assert status == 200, sql
        assert graded["score"] == 0.0 and graded["breakdown"]["reward"] == -3.0, sql
        assert graded["execution"]["status"] == "guard_refused", sql
        assert graded["feedback"].startswith("refused") and graded["execution"]["optimized_error"], sql
    status, report = call(url, "POST", "/execute", {"task_id": TASK_1, "optimized_query": HOSTILE[1]})
    assert status == 200 and "exactly one statement" in report["optimized_error"]
    status, state = call(url, "GET", "/state")
    assert state["step_count"] == 0 and not state["episode_done"]  # /grader and /execute do not advance
    assert orders_checksum(demo_dsn) == before


def test_execute_reports_in_the_seed_terms_without_touching_the_episode(url: str) -> None:
    call(url, "POST", "/reset", {"task_id": TASK_1})
    _, state_before = call(url, "GET", "/state")
    status, report = call(url, "POST", "/execute", {"task_id": TASK_1, "optimized_query": FAST_1})
    assert status == 200 and set(report) >= SEED_EXECUTION
    assert report["results_match"] and report["speedup"] > 1.0 and report["optimized_ms"] > 0.0
    assert report["original_rows"] == report["optimized_rows"] == 24 and report["original_error"] is None
    assert report["optimized_error"] is None and "Index" in report["explain_plan"]
    status, wrong = call(url, "POST", "/execute", {"task_id": TASK_1, "optimized_query": WRONG_1})
    assert status == 200 and not wrong["results_match"] and wrong["optimized_rows"] != 24
    assert call(url, "GET", "/state")[1] == state_before


def test_tasks_lists_the_five_seed_tasks_with_their_schema(url: str) -> None:
    status, listed = call(url, "GET", "/tasks")
    assert status == 200
    assert [t["task_id"] for t in listed["tasks"]] == [t.task_id for t in DEMO_TASKS] == list(KNOWN_REWRITES)
    for task in listed["tasks"]:
        assert task["sql_query"] and task["difficulty"] and task["max_steps"] >= 3
        assert "table public." in task["schema_info"] and "rows)" in task["schema_info"]
    shown = " ".join(" ".join(str(value).split()) for task in listed["tasks"] for value in task.values())
    assert not [task_id for task_id, sql in KNOWN_REWRITES.items() if " ".join(sql.split()) in shown]
    status, health = call(url, "GET", "/")
    assert status == 200 and health["tasks"] == list(KNOWN_REWRITES)


def test_bad_requests_get_4xx_with_a_reason_and_change_nothing(url: str, demo_dsn: str) -> None:
    call(url, "POST", "/reset", {"task_id": TASK_1})
    _, before = call(url, "GET", "/state")
    cases: list[tuple[str, str, Any, bytes | None, int, str]] = [
        ("POST", "/reset", {"task_id": "no_such_task"}, None, 400, "no_such_task"),
        ("POST", "/reset", None, b"{not json", 400, "not JSON"),
        ("POST", "/reset", {"task_id": 7}, None, 400, "task_id must be a string"),
        ("POST", "/step", {"summary": "no query"}, None, 400, "optimized_query is missing"),
        ("POST", "/step", {"optimized_query": 5}, None, 400, "optimized_query must be a string"),
        ("POST", "/step", None, b"[1, 2]", 400, "JSON object"),
        ("POST", "/grader", {"optimized_query": FAST_1, "approved": "yes"}, None, 400, "approved"),
        ("POST", "/execute", {"task_id": TASK_1}, None, 400, "optimized_query is required"),
        ("POST", "/execute", {"task_id": "nope", "optimized_query": FAST_1}, None, 400, "unknown task_id"),
        ("GET", "/nowhere", None, None, 404, "no such endpoint"),
        ("GET", "/step", None, None, 405, "POST"),
    ]
    for method, path, body, raw, expected, reason in cases:
        status, answer = call(url, method, path, body, raw)
        assert (status, reason in answer["detail"]) == (expected, True), (path, body, raw, answer)
    assert call(url, "GET", "/state")[1] == before

    with EnvServer(Environment(demo_dsn), port=0) as fresh:  # no episode yet
        status, answer = call(fresh.url, "POST", "/step", action(FAST_1))
        assert status == 409 and "reset" in answer["detail"]
        assert call(fresh.url, "GET", "/state")[1]["task_id"] == "none"


# -- the tasks ------------------------------------------------------------------------------------

def test_each_seed_task_has_a_rewrite_the_verifier_confirms_faster(demo_dsn: str) -> None:
    with Environment(demo_dsn) as environment:
        assert environment.check_tasks() == []
        for task_id, sql in KNOWN_REWRITES.items():
            report = environment.execute(task_id, sql)
            assert (report.status, report.results_match) == ("faster", True), (task_id, report.verdict)
            assert report.speedup > 1.5 and report.optimized_rows == report.original_rows > 0, task_id


def test_a_task_file_one_task_a_line(tmp_path: Path, demo_dsn: str) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join([
        json.dumps({"task_id": "mine", "sql_query": WRONG_1, "task_name": "One user's orders", "difficulty": "easy",
                    "max_steps": 2, "ground_truth_issues": ["other keys are ignored"]}),
        "",  # blank lines are skipped
        json.dumps({"task_id": "minimal", "sql_query": "SELECT count(*) FROM users WHERE country = 'DE'"}),
    ]) + "\n")
    tasks = load_tasks(path)
    assert [(t.task_id, t.difficulty, t.max_steps) for t in tasks] == [("mine", "easy", 2), ("minimal", "medium", 4)]
    with Environment(demo_dsn, tasks) as environment:
        assert environment.check_tasks() == []
        observation = environment.reset("mine")
        assert (observation.task_name, observation.max_steps) == ("One user's orders", 2)
        assert environment.reset().task_id == "mine"  # no task_id: the first task
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"task_id": "gone", "sql_query": "SELECT * FROM no_such_table"}) + "\n")
    with Environment(demo_dsn, load_tasks(broken)) as environment:
        assert ["no_such_table" in p for p in environment.check_tasks()] == [True]
        with pytest.raises(TaskUnavailable, match="cannot be run on this database"):
            environment.reset("gone")
        assert environment.state().task_id == "none"


@pytest.mark.parametrize(("lines", "reason"), [
    (["not json"], ":1: not JSON"),
    (["[1, 2]"], ":1: a line must be a JSON object"),
    ([json.dumps({"sql_query": "SELECT 1"})], ":1: task_id is missing"),
    ([json.dumps({"task_id": "a"})], ":1: sql_query is missing"),
    ([json.dumps({"task_id": "a", "sql_query": "DELETE FROM orders"})], ":1: task 'a': its sql_query is not one "
                                                                        "read-only query"),
    ([json.dumps({"task_id": "a", "sql_query": "SELECT 1", "max_steps": 0})], "max_steps must be between"),
    ([json.dumps({"task_id": "a", "sql_query": "SELECT 1", "max_steps": "3"})], "max_steps must be an integer"),
    ([json.dumps({"task_id": "a", "sql_query": "SELECT 1"})] * 2, ":2: task_id 'a' is already used on line 1"),
    ([json.dumps({"task_id": "a", "sql_query": "SELECT 1"}), json.dumps({"slow_sql": "SELECT 1"})], ":2: a corpus"),
    ([json.dumps({"slow_sql": "SELECT 1"}), json.dumps({"task_id": "a", "sql_query": "SELECT 1"})], ":2: no slow_sql"),
    ([""], "holds no tasks"),
])
def test_a_task_file_that_cannot_be_used_is_refused_with_its_line(tmp_path: Path, lines: list[str],
                                                                   reason: str) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskFileError) as error:
        load_tasks(path)
    assert reason in str(error.value)


def write_corpus(tmp_path: Path) -> Path:
    """A tiny corpus in the format `laser corpus` writes: two pairs and the schema manifest beside them."""
    pairs = [
        {"schema_id": "demo", "database": "laser_demo", "seed_name": "orders_of_a_user", "seed_sql": FAST_1,
         "slow_sql": DEMO_TASKS[0].sql_query, "path": ["sargable_to_cast", "range_to_extract"], "seed_ms": 0.5,
         "slow_ms": 50.0, "slowdown": 100.0, "slowdown_is_lower_bound": False, "evidence": {}, "split": "train"},
        {"schema_id": "demo", "database": "laser_demo", "seed_name": "german_users",
         "seed_sql": "SELECT id FROM users WHERE country = 'DE'",
         "slow_sql": "SELECT id FROM users WHERE upper(country) = 'DE'", "path": ["wrap_in_function"],
         "seed_ms": 1.0, "slow_ms": 3.0, "slowdown": 3.0, "slowdown_is_lower_bound": False, "evidence": {},
         "split": "validation"},
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    corpus.with_name(corpus.name + ".schema.json").write_text(json.dumps({"tables": {}}))
    return corpus


def test_a_corpus_file_its_slow_queries_become_tasks(tmp_path: Path) -> None:
    tasks = load_tasks(write_corpus(tmp_path))
    assert [(t.task_id, t.difficulty) for t in tasks] == [("corpus_1", "medium"), ("corpus_2", "easy")]
    assert tasks[0].sql_query == DEMO_TASKS[0].sql_query and "range_to_extract" in tasks[0].task_description
    assert FAST_1 not in json.dumps([t.to_json() for t in tasks])


def test_laser_env_serve_runs_the_corpus_as_tasks(tmp_path: Path, demo_dsn: str) -> None:
    corpus = write_corpus(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "laser.cli", "env", "serve", "--dsn", demo_dsn, "--tasks",
                                str(corpus), "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("serving 2 task(s) on http://"):
            process.terminate()
            pytest.fail(f"laser env serve did not start: {line!r} {process.communicate(timeout=30)[1]}")
        served = line.split(" on ", 1)[1].strip()
        status, listed = call(served, "GET", "/tasks")
        assert status == 200 and [t["task_id"] for t in listed["tasks"]] == ["corpus_1", "corpus_2"]
        status, report = call(served, "POST", "/execute", {"task_id": "corpus_1", "optimized_query": FAST_1})
        assert status == 200 and report["results_match"] and report["status"] == "faster"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_laser_env_command_line_errors(tmp_path: Path, demo_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["env"], ["env", "serve"], ["env", "serve", "--dsn", demo_dsn, "--port", "x"]):
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        assert stopped.value.code == 2, argv
    capsys.readouterr()
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"task_id": "gone", "sql_query": "SELECT * FROM no_such_table"}) + "\n")
    for extra, code, message in (
        (["--tasks", str(tmp_path / "missing.jsonl")], 2, "cannot read the task file"),
        (["--tasks", str(broken)], 2, "1 task(s) do not run on this database"),
        (["--port", "70000"], 2, "--port must be between 0 and 65535"),
        (["--text-weight", "2"], 2, "text_weight must be in [0, 1]"),
        (["--timeout-ms", "0"], 2, "statement_timeout_ms must be positive"),
    ):
        assert cli.main(["env", "serve", "--dsn", demo_dsn, *extra]) == code, extra
        assert message in capsys.readouterr().err, extra
    assert cli.main(["env", "serve", "--dsn", "host=/nonexistent port=1 dbname=x connect_timeout=2"]) == 1
    assert "cannot connect" in capsys.readouterr().err


# -- OpenEnv's and TRL's shapes -------------------------------------------------------------------

def test_openenv_shape_reset_step_state(demo_dsn: str) -> None:
    environment = SqlEnvironment(Environment(demo_dsn, DEMO_TASKS[:1]))
    try:
        observation = environment.reset(task_id=TASK_1, episode_id="episode-1")
        assert isinstance(observation, SqlObservation) and not observation.done and observation.reward is None
        assert (environment.state.episode_id, environment.state.step_count) == ("episode-1", 0)
        first = environment.environment._episode.session if environment.environment._episode else None
        stepped = environment.step(SqlAction(optimized_query=FAST_1))
        assert stepped.reward is not None and stepped.reward > 0.5 and not stepped.done
        assert stepped.metadata["execution"]["results_match"] and stepped.metadata["reward"]["feedback"]
        assert environment.state.step_count == 1 and stepped.step_count == 1
        environment.reset(seed=3)  # a new episode, in a new database session
        assert first is not None and first.connection.closed and environment.state.step_count == 0
    finally:
        environment.close()


def test_trl_environment_tools_and_reward(demo_dsn: str) -> None:
    from transformers.utils.chat_template_utils import get_json_schema

    make = environment_factory(demo_dsn, DEMO_TASKS[:2])
    env, other = make(), make()
    # What TRL exposes: every public function of the class but reset and get_reward is a tool.
    public = {name for name, _ in inspect.getmembers(SqlRewriteEnv, predicate=inspect.isfunction)
              if not name.startswith("_")}
    assert public == {"reset", "get_reward", "submit_rewrite", "explain"}
    for tool in (env.submit_rewrite, env.explain):
        schema = get_json_schema(tool)
        assert schema["function"]["parameters"]["required"] == ["sql"], schema
        assert schema["function"]["parameters"]["properties"]["sql"]["description"], schema

    try:
        prompt = env.reset(task_id=TASK_1)
        assert DEMO_TASKS[0].sql_query in prompt and "submit_rewrite(sql)" in prompt and "3 submission" in prompt
        assert env.get_reward() == -3.0  # nothing submitted yet
        assert "Index" in env.explain(FAST_1) and env.explain("DELETE FROM orders").startswith("refused")
        wrong = env.submit_rewrite(WRONG_1)
        assert "wrong results" in wrong and "Rows only your query returns" in wrong and "Submissions left: 2" in wrong
        assert env.get_reward() == -1.5
        assert "faster, results verified equal" in env.submit_rewrite(FAST_1) and env.get_reward() > 1.0
        assert env.submit_rewrite("SELECT 1; DELETE FROM orders").startswith("Verdict: refused")
        assert env.get_reward() == -3.0  # a refused submission anywhere: the lowest reward
        assert env.submit_rewrite(FAST_1).startswith("No submissions left")

        # Rows without a task_id are dealt the tasks in turn, across environments.
        assert DEMO_TASKS[0].sql_query in other.reset(prompt=[{"role": "user", "content": ""}])
        assert DEMO_TASKS[1].sql_query in env.reset() and env.get_reward() == -3.0  # a fresh episode
    finally:
        for instance in (env, other):
            instance._environment.close()
    assert [row["task_id"] for row in dataset_rows(DEMO_TASKS[:2], repeat=2)] == [TASK_1, DEMO_TASKS[1].task_id] * 2
