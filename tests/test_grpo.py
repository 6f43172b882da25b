"""SQL-GRPO's loop end to end on CPU against real PostgreSQL: a tiny model, fine-tuned so that the
fast query is reachable by sampling, rolls out ragged groups (CADR), is rewarded by the verifier,
is updated against its frozen reference, and its expected reward rises.

The toy where the reward is reachable: two prompts, and a model fine-tuned on two answers to each
(the fast equivalent query, and a query with another constant, which the verifier finds not
equivalent), so that sampling at temperature 1.0 gives both, and garbled variants of both. What
GRPO has to learn is which one the verifier rewards."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import torch
from psycopg import sql

from laser import demo
from laser.localdb import LocalCluster
from model.corpus import structure
from model.corpus.slowdowns.exists_to_count import exists_to_count
from model.grpo.trainer import GrpoConfig, GrpoTrainer, Task
from model.pool import VerifierPool
from model.sft import train
from model.tiny import build_tiny_model
from sidecar.catalog import load_catalog
from sidecar.prompting.prompts import rewrite_messages

TOY = """
CREATE TABLE products (id int PRIMARY KEY, category text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, product_id int NOT NULL REFERENCES products, quantity int NOT NULL);
INSERT INTO products SELECT i, 'c' || (i % 5) FROM generate_series(1, 300) AS i;
INSERT INTO orders SELECT i, 1 + (i * 7919) % 300, i % 9 FROM generate_series(1, 6000) AS i;
ANALYZE;
"""
SEEDS = [f"SELECT p.category, count(*) FROM products AS p WHERE EXISTS (SELECT 1 FROM orders AS o WHERE "
         f"o.product_id = p.id AND o.quantity > {n}) GROUP BY p.category" for n in (3, 6)]


@pytest.fixture(scope="module")
def toy_dsn(cluster: LocalCluster) -> str:
    cluster.execute(sql.SQL("DROP DATABASE IF EXISTS laser_grpo_toy"))
    cluster.ensure_database("laser_grpo_toy")
    cluster.psql("-c", TOY, dbname="laser_grpo_toy")
    cluster.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
        sql.Identifier(demo.DEMO_ROLE)), dbname="laser_grpo_toy")
    return cluster.dsn("laser_grpo_toy", demo.DEMO_ROLE)


def test_grpo_steps_roll_out_ragged_groups_rewarded_by_the_verifier_and_move_the_policy(
        toy_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
    tasks, answers = [], []
    for seed in SEEDS:
        slow = exists_to_count(structure.parse(seed), catalog)
        assert slow is not None
        slow_sql = slow.sql(dialect="postgres")
        tasks.append(Task(rewrite_messages(slow_sql, catalog), slow_sql))
        answers.append(f"```sql\n{seed}\n```")
    texts = [m.content for t in tasks for m in t.messages] + answers
    model_dir = build_tiny_model(tmp_path / "base", texts, seed=0)
    # A little SFT: the fast query becomes reachable by sampling, not yet the answer every time.
    train(model_dir, [(t.messages, a) for t, a in zip(tasks, answers, strict=True)], steps=110, lr=3e-3,
          batch_size=2, seed=0, log_every=0)
    config = GrpoConfig(steps=4, prompts_per_step=2, pilot=2, budget=12, max_per_prompt=8, lr=1e-4,
                        max_new_tokens=96, seed=0)
    lines: list[str] = []
    with VerifierPool(toy_dsn, workers=1) as pool:
        trainer = GrpoTrainer(model_dir, tasks, pool, config, log=lines.append)
        before = trainer.evaluate(samples=8)
        # Common random numbers: the same policy gives the same rollouts (rewards differ only by timing noise).
        assert trainer.evaluate(samples=8) == pytest.approx(before, abs=0.05)
        history = trainer.train()
        fixed = GrpoTrainer(model_dir, tasks, pool, replace(config, adaptive=False, steps=1), log=lines.append)
        plain = fixed.train()
    assert len(history) == 4 and all(s.rollouts == sum(s.per_prompt) == 12 for s in history), lines
    assert any(len(set(s.per_prompt)) > 1 for s in history), lines  # CADR gave the prompts different budgets
    assert plain[0].per_prompt == [6, 6]  # standard GRPO: one group size
    assert history[0].kl == 0.0 < history[-1].kl, lines  # the policy moved away from its reference
    assert any(s.faster > 0 for s in history), lines  # the verifier confirmed faster rewrites among the rollouts
    assert all(-3.0 <= s.mean_reward <= 3.0 for s in history)


def test_grpo_raises_the_expected_reward_of_a_tiny_model_where_the_reward_is_reachable(
        toy_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
    tasks, fast, wrong = [], [], []
    for seed in SEEDS:
        slow = exists_to_count(structure.parse(seed), catalog)
        assert slow is not None
        slow_sql = slow.sql(dialect="postgres")
        tasks.append(Task(rewrite_messages(slow_sql, catalog), slow_sql))
        fast.append(f"```sql\n{seed}\n```")
        wrong.append(f"```sql\n{seed.replace('> 3', '> 4').replace('> 6', '> 7')}\n```")
    model_dir = build_tiny_model(tmp_path / "base", [m.content for t in tasks for m in t.messages] + fast + wrong,
                                 seed=0)
    train(model_dir, [(t.messages, a) for t, a in zip(tasks * 2, fast + wrong, strict=True)], steps=400, lr=3e-3,
          batch_size=4, seed=0, log_every=0)
    # Measured on this toy (4 seeds, 30 steps): lr 3e-4 with 4 updates a batch raised the expected
    # reward by 0.66 to 1.37; one update a batch, or lr 1e-3, rose less and less reliably.
    config = GrpoConfig(steps=30, prompts_per_step=2, pilot=2, budget=12, max_per_prompt=8, lr=3e-4,
                        updates_per_batch=4, max_new_tokens=96, seed=0)
    lines: list[str] = []
    with VerifierPool(toy_dsn, workers=2) as pool:
        trainer = GrpoTrainer(model_dir, tasks, pool, config, log=lines.append)
        before = trainer.evaluate(samples=32)
        history = trainer.train()
        after = trainer.evaluate(samples=32)
    # The per-step means (12 rollouts of whichever prompts were drawn) are too noisy to compare; the
    # evaluation samples every prompt 32 times with the same random numbers before and after.
    assert len(history) == 30
    assert after - before >= 0.5, (before, after, lines)


def test_laser_train_grpo_runs_on_a_corpus_and_writes_its_log_plot_and_model(
        toy_dsn: str, tmp_path: Path) -> None:
    import json

    from laser import cli
    from model.corpus.build import schema_manifest

    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
        manifest = schema_manifest(conn)
    corpus = tmp_path / "toy.jsonl"
    rows = [{"seed_sql": seed, "slow_sql": exists_to_count(structure.parse(seed), catalog).sql(dialect="postgres"),
             "path": ["exists_to_count"], "split": "train"} for seed in SEEDS]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus.with_name(corpus.name + ".schema.json").write_text(json.dumps(manifest))
    model_dir = build_tiny_model(tmp_path / "base", SEEDS, seed=0)
    out, log, plot = tmp_path / "grpo", tmp_path / "grpo.jsonl", tmp_path / "grpo.png"
    code = cli.main(["train", "grpo", "--corpus", str(corpus), "--model-dir", str(model_dir), "--dsn", toy_dsn,
                     "--out", str(out), "--steps", "2", "--prompts-per-step", "2", "--budget", "6", "--pilot", "2",
                     "--max-new-tokens", "24", "--workers", "1", "--updates-per-batch", "2",
                     "--eval-samples", "2", "--log", str(log), "--plot", str(plot)])
    assert code == 0
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and all(s["rollouts"] == 6 for s in steps)
    assert (out / "config.json").is_file() and plot.stat().st_size > 10_000
    assert cli.main(["train", "grpo", "--corpus", str(tmp_path / "missing.jsonl"), "--model-dir", str(model_dir),
                     "--dsn", toy_dsn, "--out", str(out)]) == 2


def test_self_improvement_mines_verified_slow_rewrites_from_groups_that_also_won(
        toy_dsn: str, tmp_path: Path) -> None:
    """SPA §3.6 with real verdicts: in a group where one rollout is verified faster, a rollout that
    is equivalent but slower becomes a new prompt, rendered like any other; a group without a win
    gives nothing."""
    from model.grpo.trainer import Rollout
    from model.pool import Job
    from model.sft_data import PromptRenderer

    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
    seed = SEEDS[0]
    slow = exists_to_count(structure.parse(seed), catalog)
    assert slow is not None
    slow_sql = slow.sql(dialect="postgres")
    # Equivalent on any data (a count is never negative), and slower: 1.8 million pairs counted.
    slower = f"{slow_sql.rstrip()} HAVING (SELECT count(*) FROM orders AS o2, products AS p2) >= 0"
    model_dir = build_tiny_model(tmp_path / "base", [seed, slow_sql], seed=0)
    config = GrpoConfig(steps=1, self_improve_steps=1, prompts_per_step=1, pilot=1, budget=2, max_new_tokens=8)
    with VerifierPool(toy_dsn, workers=1) as pool, PromptRenderer({"tables": {}}, toy_dsn) as renderer:
        trainer = GrpoTrainer(model_dir, [Task(rewrite_messages(slow_sql, catalog), slow_sql)], pool, config,
                              render=renderer.render, log=lambda _: None)
        won, lost = pool.verify_many([Job(slow_sql, seed), Job(slow_sql, slower)])
        assert won.status.value == "faster" and lost.equivalent and lost.speedup < 1.0, (won, lost)

        def rollout(sql: str, outcome: object) -> Rollout:
            return Rollout(0, [1], f"```sql\n{sql}\n```", 0.0, result=outcome)  # type: ignore[arg-type]

        assert trainer._mine([rollout(slower, lost)]) == 0  # no win in the group: not known to be optimizable
        assert trainer._mine([rollout(seed, won), rollout(slower, lost)]) == 1
        assert trainer._mine([rollout(seed, won), rollout(slower, lost)]) == 0  # already mined
    assert len(trainer.tasks) == 2 and trainer.tasks[1].original.startswith(slow_sql.rstrip())
    assert "HAVING" in trainer.tasks[1].messages[-1].content  # the mined rewrite is the new prompt's query
    assert trainer._choose("self-improve").count(1) == 1 and trainer._choose("base") == [0]


def test_laser_train_grpo_trains_a_lora_adapter_with_spa_rewards_and_the_sidecar_serves_it(
        toy_dsn: str, tmp_path: Path) -> None:
    import json

    from laser import cli
    from model.corpus.build import schema_manifest
    from sidecar.backends.transformers_backend import TransformersBackend

    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
        manifest = schema_manifest(conn)
    corpus = tmp_path / "toy.jsonl"
    rows = [{"seed_sql": seed, "slow_sql": exists_to_count(structure.parse(seed), catalog).sql(dialect="postgres"),
             "path": ["exists_to_count"], "split": "train"} for seed in SEEDS]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus.with_name(corpus.name + ".schema.json").write_text(json.dumps(manifest))
    model_dir = build_tiny_model(tmp_path / "base", SEEDS, seed=0)
    common = ["--corpus", str(corpus), "--model-dir", str(model_dir), "--dsn", toy_dsn, "--prompts-per-step", "2",
              "--budget", "4", "--pilot", "2", "--max-new-tokens", "16", "--workers", "1", "--lr", "1e-2"]
    first, log = tmp_path / "adapter", tmp_path / "grpo.jsonl"
    assert cli.main(["train", "grpo", *common, "--out", str(first), "--steps", "1", "--self-improve-steps", "1",
                     "--reward", "spa", "--gate-threshold", "0.25", "--lora-r", "4", "--log", str(log)]) == 0
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["phase"] for s in steps] == ["base", "self-improve"]
    assert all(sum(s["budget_by_complexity"].values()) == s["rollouts"] for s in steps)
    assert (first / "adapter_config.json").is_file() and not (first / "model.safetensors").exists()
    second = tmp_path / "adapter2"
    assert cli.main(["train", "grpo", *common, "--out", str(second), "--steps", "1", "--adapter", str(first)]) == 0
    served = TransformersBackend(model_dir, device="cpu", adapter=second)
    assert served.info().details["adapter"] == str(second.resolve())
    assert cli.main(["train", "grpo", *common, "--out", str(second), "--adapter", str(first), "--lora-r", "4"]) == 2
    assert cli.main(["train", "grpo", *common, "--out", str(second), "--adapter", str(model_dir)]) == 2


def test_laser_train_grpo_verifies_rewards_on_ray_actors_against_the_database_and_a_replica(
        toy_dsn: str, tmp_path: Path) -> None:
    import json

    from laser import cli
    from model.corpus.build import schema_manifest

    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
        manifest = schema_manifest(conn)
    corpus = tmp_path / "toy.jsonl"
    rows = [{"seed_sql": seed, "slow_sql": exists_to_count(structure.parse(seed), catalog).sql(dialect="postgres"),
             "path": ["exists_to_count"], "split": "train"} for seed in SEEDS]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus.with_name(corpus.name + ".schema.json").write_text(json.dumps(manifest))
    model_dir = build_tiny_model(tmp_path / "base", SEEDS, seed=0)
    common = ["train", "grpo", "--corpus", str(corpus), "--model-dir", str(model_dir), "--dsn", toy_dsn,
              "--out", str(tmp_path / "out"), "--steps", "1", "--prompts-per-step", "2", "--budget", "4",
              "--pilot", "2", "--max-new-tokens", "16", "--workers", "1"]
    log = tmp_path / "ray.jsonl"
    # The same database named as its own replica: two actors, one session each.
    assert cli.main([*common, "--engine", "ray", "--dsn-replica", toy_dsn, "--log", str(log)]) == 0
    [step] = [json.loads(line) for line in log.read_text().splitlines()]
    assert step["rollouts"] == 4
    assert cli.main([*common, "--dsn-replica", toy_dsn]) == 2  # a replica without Ray
    # The untrained model's rollouts rarely hold SQL: the pool's own verdicts, in the order of the jobs.
    from model.pool import Job, RayVerifierPool

    slow = str(rows[0]["slow_sql"])
    wrong = SEEDS[0].replace("> 3", "> 4")
    with RayVerifierPool([toy_dsn, toy_dsn], workers=1) as pool:
        assert pool.workers == 2
        verdicts = pool.verify_many([Job(slow, SEEDS[0]), Job(slow, wrong), Job(slow, "DELETE FROM orders")])
    assert [v.status.value for v in verdicts] == ["faster", "not_equivalent", "guard_refused"], verdicts


def test_grpo_trains_data_parallel_in_two_processes_launched_by_torchrun(toy_dsn: str, tmp_path: Path) -> None:
    """Two training processes (gloo on the CPU, as NCCL would on GPUs): each rolls out its own
    prompts, the gradients are averaged once per optimizer step, the log counts both shares, and
    the replicas end identical (the trainer checks before the first process saves)."""
    import json
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from model.corpus.build import schema_manifest

    with psycopg.connect(toy_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
        manifest = schema_manifest(conn)
    corpus = tmp_path / "toy.jsonl"
    rows, tasks, answers = [], [], []
    for seed in SEEDS:
        slow_sql = exists_to_count(structure.parse(seed), catalog).sql(dialect="postgres")
        rows.append({"seed_sql": seed, "slow_sql": slow_sql, "path": ["exists_to_count"], "split": "train"})
        tasks.append(Task(rewrite_messages(slow_sql, catalog), slow_sql))
        answers += [f"```sql\n{seed}\n```", f"```sql\n{seed.replace('> 3', '> 4').replace('> 6', '> 7')}\n```"]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus.with_name(corpus.name + ".schema.json").write_text(json.dumps(manifest))
    model_dir = build_tiny_model(tmp_path / "base", [m.content for t in tasks for m in t.messages] + answers, seed=0)
    # Two answers per prompt (fast, wrong), so that the groups' rewards differ and the update is not zero.
    train(model_dir, [(t.messages, a) for t in tasks for a in answers[2 * tasks.index(t):2 * tasks.index(t) + 2]],
          steps=150, lr=3e-3, batch_size=4, seed=0, log_every=0)
    out, log = tmp_path / "out", tmp_path / "steps.jsonl"
    torchrun = Path(sys.executable).with_name("torchrun")
    # "--" keeps torchrun's own parser off the command's options (it would take --log for one of its own).
    run = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "laser.cli", "--", "train", "grpo", "--corpus", str(corpus),
         "--model-dir", str(model_dir), "--dsn", toy_dsn, "--out", str(out), "--steps", "3",
         "--prompts-per-step", "1", "--budget", "4", "--pilot", "2", "--max-new-tokens", "96", "--workers", "1",
         "--lr", "1e-3", "--log", str(log)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]  # one log, written by the first process
    assert all(s["rollouts"] == 8 and len(s["per_prompt"]) == 2 for s in steps), steps
    before, after = load_file(model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
