"""`laser env serve`: the environment over HTTP, speaking the seed environment's contract.

    GET  /             health: the environment's name and task ids
    POST /reset        {"task_id": ...} (optional)            -> Observation
    POST /step         Action                                 -> {observation, reward, done, info}
    GET  /state                                               -> the episode's state
    GET  /tasks                                               -> {"tasks": [...]} (with schema_info)
    POST /grader       Action                                 -> reward (+ execution), episode unchanged
    POST /execute      {"task_id": ..., "optimized_query": ...} -> the execution report
    GET  /leaderboard                                         -> {"leaderboard": {...}, "description": ...}

Standard library only (`http.server`). Requests are handled in threads, but the environment
serves one at a time, so timings never compete. A request that does not fit (not JSON, a field
missing or of the wrong type, an unknown task, no episode) gets a 4xx with `{"detail": why}` and
changes nothing; the database being unreachable is a 503.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from model.env.contract import Action, ContractError, execute_request, reset_request
from model.env.episode import EnvError, Environment

log = logging.getLogger("laser.env")

MAX_BODY_BYTES = 1024 * 1024
DESCRIPTION = ("Scores come from the LASER verifier: a rewrite counts when its results equal the original's on the "
               "live data and on perturbed copies of the tables, and its speedup is measured by interleaved timed "
               "runs; refused statements (data-modifying, several statements, side effects) score 0.")

Route = Callable[[Environment, Any], tuple[int, Any]]


def _root(env: Environment, _: Any) -> tuple[int, Any]:
    return 200, {"status": "ok", "environment": "laser-sql-env", "dialect": "postgresql", "tasks": list(env.tasks)}


def _reset(env: Environment, body: Any) -> tuple[int, Any]:
    return 200, env.reset(reset_request(body)).to_json()


def _step(env: Environment, body: Any) -> tuple[int, Any]:
    return 200, env.step(Action.from_json(body)).to_json()


def _state(env: Environment, _: Any) -> tuple[int, Any]:
    return 200, env.state().to_json()


def _tasks(env: Environment, _: Any) -> tuple[int, Any]:
    return 200, {"tasks": env.task_list()}


def _grader(env: Environment, body: Any) -> tuple[int, Any]:
    reward, report = env.grade(Action.from_json(body))
    return 200, {**reward.to_json(), "execution": report.to_json()}


def _execute(env: Environment, body: Any) -> tuple[int, Any]:
    task_id, query = execute_request(body)
    return 200, env.execute(task_id, query).to_json()


def _leaderboard(env: Environment, _: Any) -> tuple[int, Any]:
    return 200, {"leaderboard": env.leaderboard.to_json(), "description": DESCRIPTION}


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): _root,
    ("POST", "/reset"): _reset,
    ("POST", "/step"): _step,
    ("GET", "/state"): _state,
    ("GET", "/tasks"): _tasks,
    ("POST", "/grader"): _grader,
    ("POST", "/execute"): _execute,
    ("GET", "/leaderboard"): _leaderboard,
}


def _parsed(raw: bytes) -> Any:
    """The JSON value of a request body; None for an empty one."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"the body is not JSON: {exc}") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], environment: Environment) -> None:
        super().__init__(address, _Handler)
        self.environment = environment


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            raw = self._raw_body() if method == "POST" else b""
        except ContractError as exc:
            self.close_connection = True  # the body was not read: the connection cannot be reused
            self._reply(400, {"detail": str(exc)})
            return
        route = ROUTES.get((method, path))
        if route is None:
            allowed = sorted(m for m, p in ROUTES if p == path)
            if allowed:
                self._reply(405, {"detail": f"{method} {path} is not served; use {', '.join(allowed)}"})
            else:
                self._reply(404, {"detail": f"no such endpoint: {path}"})
            return
        try:
            status, payload = route(self.server.environment, _parsed(raw))
        except ContractError as exc:
            status, payload = 400, {"detail": str(exc)}
        except EnvError as exc:
            status, payload = exc.status, {"detail": str(exc)}
        except Exception as exc:
            log.exception("%s %s failed", method, path)
            status, payload = 500, {"detail": f"internal error: {type(exc).__name__}: {exc}"}
        self._reply(status, payload)

    def _raw_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ContractError("Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            raise ContractError(f"the body is {length} bytes; at most {MAX_BODY_BYTES} are accepted")
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, default=str).encode()
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class EnvServer:
    """The HTTP server around one Environment. `with EnvServer(env, port=0) as server:` serves in a
    background thread (port 0: any free port, see `url`); `serve_forever()` serves in this one."""

    def __init__(self, environment: Environment, host: str = "127.0.0.1", port: int = 7860) -> None:
        self.environment = environment
        self._httpd = _Server((host, port), environment)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        """Stop serving (if serving in a thread), close the socket and the environment's episode."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.environment.close()

    def __enter__(self) -> EnvServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="laser-env-http", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
