"""Regenerates the checked-in Python stubs from laser.proto (a test checks they are current)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
GENERATED = ("laser_pb2.py", "laser_pb2.pyi", "laser_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc on laser.proto, writing `<out_root>/laser_proto/*_pb2*.py`; return the files."""
    from grpc_tools import protoc  # build-time dependency only

    (out_root / "laser_proto").mkdir(parents=True, exist_ok=True)
    include = str(PROTO_DIR.parent)
    args = [
        "protoc",
        f"-I{include}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO_DIR / "laser.proto"),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on laser.proto")
    return [out_root / "laser_proto" / name for name in GENERATED]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            (PROTO_DIR / path.name).write_bytes(path.read_bytes())
            print(f"wrote {PROTO_DIR / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
