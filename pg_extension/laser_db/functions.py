"""Entry point of the plpython3u body: one call into the sidecar, answered as a JSON document.

Failures come back as data ({"ok": false, "message", "sqlstate", "hint"}) so the SQL wrappers
raise them as ordinary PostgreSQL errors with the right SQLSTATE, without a Python traceback.
"""
from __future__ import annotations

import json
from typing import Any

from laser_db import client
from laser_db.credentials import CredentialsError, read_credentials
from laser_db.precheck import InputError, precheck

DEFAULT_ADDRESS = "127.0.0.1:50551"
DEFAULT_TIMEOUT_MS = 120_000


MIN_DEMONSTRATION_SPEEDUP = 1.5
"""A verified rewrite at least this much faster is recorded in laser.rewrite_wins (a demonstration)."""


def remember(plpy: Any, query: str, response: Any) -> None:
    """Record a verified win as the caller, for model prompts (laser.demonstrations); never fails the
    answer: where the caller's transaction is read-only or the extension predates the table, nothing
    is recorded."""
    try:
        with plpy.subtransaction():
            plan = plpy.prepare(
                "insert into laser.rewrite_wins (original_sql, rewritten_sql, speedup, source)"
                " values ($1, $2, $3, $4) on conflict do nothing",
                ["text", "text", "float8", "text"])
            plpy.execute(plan, [query, response.rewritten_sql, response.speedup, response.source])
    except plpy.SPIError:
        pass


class SettingError(ValueError):
    """A laser.* setting has a value that cannot be used."""


def settings(plpy: Any) -> tuple[client.Channel, int, client.Caller]:
    """Where the sidecar is (laser.sidecar_credentials' address and token, else laser.sidecar_address),
    the call's timeout, and who calls on which server."""
    row = plpy.execute(
        "select current_setting('laser.sidecar_address', true) as address,"
        " current_setting('laser.sidecar_credentials', true) as credentials,"
        " current_setting('laser.timeout_ms', true) as timeout_ms,"
        " current_user::text as role, session_user::text as login_role,"
        " current_database()::text as database,"
        " (select system_identifier::text from pg_catalog.pg_control_system()) as server_id,"
        " host(inet_server_addr()) as host, current_setting('port') as port"
    )[0]
    credentials = (row["credentials"] or "").strip()
    if credentials:
        channel = client.Channel(*read_credentials(credentials))
    else:
        channel = client.Channel((row["address"] or "").strip() or DEFAULT_ADDRESS)
    server = f"host={row['host']} port={row['port']}" if row["host"] else f"port={row['port']} (Unix socket)"
    raw_timeout = (row["timeout_ms"] or "").strip()
    timeout_ms = DEFAULT_TIMEOUT_MS
    if raw_timeout:
        try:
            timeout_ms = int(raw_timeout)
        except ValueError:
            timeout_ms = 0
        if timeout_ms <= 0:
            raise SettingError(f"laser.timeout_ms must be a positive number of milliseconds; got {raw_timeout!r}")
    return channel, timeout_ms, client.Caller(row["database"], row["login_role"], row["role"], row["server_id"],
                                              server)


def interrupts(plpy: Any) -> client.Interrupts:
    """A check that raises (plpy.SPIError, SQLSTATE 57014) once the calling statement is cancelled:
    running any statement is where PostgreSQL acts on statement_timeout and pg_cancel_backend."""
    plan = plpy.prepare("select 1")
    return lambda: plpy.execute(plan)


def _failure(message: str, sqlstate: str, hint: str = "") -> str:
    return json.dumps({"ok": False, "message": message, "sqlstate": sqlstate, "hint": hint})


def call(plpy: Any, method: str, query: str | None, candidate: str | None = None) -> str:
    """method "rewrite": the sidecar's answer with its evidence; "verify": the verifier's outcome;
    "model_info": what the sidecar generates candidates with."""
    try:
        if method == "rewrite":
            text = precheck(query)
            address, timeout_ms, caller = settings(plpy)
            response = client.rewrite(address, text, caller, timeout_ms, interrupts=interrupts(plpy))
            evidence = json.loads(response.evidence_json)
            notice = None
            if response.status != "improved":
                notice = f"laser: no verified improvement: {response.message}"
            elif response.speedup >= MIN_DEMONSTRATION_SPEEDUP and not response.cached:
                remember(plpy, text, response)
            return json.dumps({"ok": True, "result": evidence, "notice": notice})
        if method == "verify":
            original = precheck(query, "original")
            text = precheck(candidate, "candidate")
            address, timeout_ms, caller = settings(plpy)
            verdict = client.verify(address, original, text, caller, timeout_ms, interrupts=interrupts(plpy))
            return json.dumps({"ok": True, "result": json.loads(verdict.outcome.evidence_json), "notice": None})
        if method == "model_info":
            address, timeout_ms, _ = settings(plpy)
            info = client.model_info(address, timeout_ms)
            result = {"backend": info.backend, "model": info.model, "version": info.version, "device": info.device,
                      "rules_alongside": info.rules_alongside, "repair_rounds": info.repair_rounds,
                      "demonstrations": info.demonstrations, "details": json.loads(info.details_json or "{}"),
                      "sidecar_address": address.address}
            return json.dumps({"ok": True, "result": result, "notice": None})
        return _failure(f"laser: unknown method {method!r}", "22023")
    except client.SidecarError as exc:
        return _failure(exc.message, exc.sqlstate, exc.hint)
    except (InputError, SettingError, CredentialsError) as exc:
        return _failure(f"laser: {exc}", "22023")
    except plpy.SPIError as exc:  # the calling statement was cancelled while the sidecar worked
        return _failure(f"laser: {exc}", getattr(exc, "sqlstate", None) or "57014")
