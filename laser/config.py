"""Settings of the local tooling: where the embedded cluster lives and where the `laser` command finds
the sidecar. With `sidecar.config`, the only code that reads the environment.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.config import from_env
from sidecar.exposure import read_token_file

ENV_PREFIX = "LASER_"


@dataclass(frozen=True)
class LocalSettings:
    """The embedded default's settings, each overridable by a `LASER_<FIELD>` variable."""

    state_dir: str = ""
    """Where the cluster's data, socket, logs and benchmark results live; empty: `<checkout>/.laser`,
    or a directory under /var/lib/laser when the server's OS user cannot enter the checkout."""
    pg_bin: str = "/usr/lib/postgresql/15/bin"
    """The PostgreSQL 15 server binaries (initdb, pg_ctl, psql, pg_config)."""
    pylib_dir: str = ""
    """Where the local cluster's in-database Python package is installed; empty: /usr/local/lib/laser/<version>
    as root, else <state_dir>/pylib/<version>. Set it to keep a second checkout's package apart."""
    pg_port: int = 54329
    """The port of the cluster's Unix socket."""
    sidecar_address: str = "127.0.0.1:50551"
    """Where the sidecar serves (and where the `laser` command asks it)."""
    sidecar_token: str = field(default="", repr=False)
    """The token the `laser` command sends to a sidecar that needs one (the variable the sidecar
    itself reads, LASER_SIDECAR_TOKEN)."""
    sidecar_token_file: str = ""
    """A file holding that token (LASER_SIDECAR_TOKEN_FILE, as for the sidecar); wins over sidecar_token."""

    def __post_init__(self) -> None:
        if not 0 < self.pg_port < 65536:
            raise ValueError(f"pg_port must be a TCP port number; got {self.pg_port}")
        if not self.sidecar_address:
            raise ValueError("sidecar_address must be an address such as 127.0.0.1:50551")

    def token(self) -> str:
        """The token to send the sidecar: the file's content when sidecar_token_file is set (TokenError
        when it cannot be read), else sidecar_token ("" for none)."""
        return read_token_file(self.sidecar_token_file) if self.sidecar_token_file else self.sidecar_token

    @classmethod
    def from_env(cls) -> LocalSettings:
        """Defaults overridden by LASER_STATE_DIR, LASER_PG_BIN, LASER_PG_PORT, LASER_SIDECAR_ADDRESS.

        >>> LocalSettings.from_env().pg_port > 0
        True
        """
        return from_env(cls, ENV_PREFIX, None, {})
