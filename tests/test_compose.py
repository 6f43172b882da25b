"""docker-compose.yml cannot run here (no Docker engine): check its syntax and its consistency."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from laser.localdb import DEFAULT_SIDECAR_ADDRESS, SIDECAR_ROLE

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_parses_and_builds_from_files_that_exist() -> None:
    services = _compose()["services"]
    assert {"postgres", "sidecar", "sidecar-gpu"} <= set(services)
    for name, service in services.items():
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services


def test_compose_wiring_matches_the_local_default() -> None:
    services = _compose()["services"]
    port = DEFAULT_SIDECAR_ADDRESS.rsplit(":", 1)[1]
    assert f"laser.sidecar_address=sidecar:{port}" in services["postgres"]["command"]
    assert "shared_preload_libraries=pg_stat_statements" in services["postgres"]["command"]
    for name in ("sidecar", "sidecar-gpu"):
        command = services[name]["command"]
        assert command[command.index("--listen") + 1].endswith(f":{port}")
        dsn = dict(item.split("=", 1) for item in shlex.split(command[command.index("--dsn") + 1]))
        assert dsn["user"] == SIDECAR_ROLE and "dbname" not in dsn
        # over TCP with a password the sidecar cannot log in as callers: it must SET ROLE
        assert command[command.index("--act-as") + 1] == "set_role"
    assert services["sidecar-gpu"]["profiles"] == ["gpu"]
    gpu = services["sidecar-gpu"]
    assert gpu["command"][gpu["command"].index("--backend") + 1] == "vllm"
    model_dir = gpu["command"][gpu["command"].index("--model-dir") + 1]
    assert any(volume.split(":")[-2] == model_dir for volume in gpu["volumes"])
    assert gpu["build"]["args"]["EXTRAS"] == "[vllm]"


def test_the_sidecar_image_copies_every_package_it_installs() -> None:
    import tomllib

    dockerfile = (ROOT / "sidecar" / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {project["package-dir"].get(p, p.replace(".", "/")).split("/")[0] for p in project["packages"]}
    for root in roots:
        assert f"COPY {root} " in dockerfile or f"COPY {root}/" in dockerfile, root


def test_docker_init_creates_the_role_the_sidecar_uses() -> None:
    init = (ROOT / "pg_extension" / "docker-init.sql").read_text()
    assert f"CREATE ROLE {SIDECAR_ROLE} LOGIN" in init
    assert "CREATE EXTENSION IF NOT EXISTS laser" in init
    dockerfile = (ROOT / "pg_extension" / "Dockerfile").read_text()
    assert "COPY pg_extension/docker-init.sql /docker-entrypoint-initdb.d/" in dockerfile
