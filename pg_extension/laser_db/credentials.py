"""The sidecar credentials file named by laser.sidecar_credentials: the address of a sidecar that
needs a token, and the token.

    address = "10.0.0.5:50551"
    token = "the shared secret"       # or: token_file = "/etc/laser/sidecar.token"

The file is read by the database server's OS user on every call (a rotated token applies at once),
so make it readable by that user only. The token only ever goes to the address in the same file:
a session that SETs laser.sidecar_address cannot have it sent elsewhere, and one that points
laser.sidecar_credentials at another file learns nothing of its content (every failure reads alike).
"""
from __future__ import annotations

import tomllib
from pathlib import Path


class CredentialsError(ValueError):
    """The file cannot be used; the message never quotes its content."""


def read_credentials(path: str) -> tuple[str, str]:
    """(address, token) from the credentials file at `path`."""
    unusable = CredentialsError(
        f"laser.sidecar_credentials = {path!r} cannot be used: it must be a TOML file readable by the database "
        "server's OS user with `address` and `token` (or `token_file`)")
    try:
        data = tomllib.loads(Path(path).read_text())
        address = data.get("address")
        token = data.get("token")
        if token is None and isinstance(data.get("token_file"), str):
            token = Path(data["token_file"]).read_text()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise unusable from None
    if not isinstance(address, str) or not address.strip() or not isinstance(token, str) or not token.strip():
        raise unusable
    return address.strip(), token.strip()
