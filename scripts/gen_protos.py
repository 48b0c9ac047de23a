"""Generate the Python code of protos/cumulus/v1/*.proto into cumulus/v1/ (``_pb2``, ``_pb2_grpc``, ``.pyi``).

The generated code is committed; ``--check`` (and tests/unit/test_protos_generated.py) fails when
regenerating would change it, so the .proto files stay the one source of truth.

    python scripts/gen_protos.py          # regenerate
    python scripts/gen_protos.py --check  # exit 1 if the committed code is stale
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
PACKAGE_DIR = Path("cumulus") / "v1"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc into out_root (which mirrors the repo root); return the generated files."""
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(path.relative_to(PROTO_ROOT)) for path in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the message above")
    return sorted(p for p in (out_root / PACKAGE_DIR).iterdir() if p.name != "__init__.py")


def stale_files() -> list[str]:
    """Names of generated files whose committed copy differs from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed_dir = REPO / PACKAGE_DIR
        fresh_names = {p.name for p in fresh}
        committed = {p.name for p in committed_dir.glob("*_pb2*.py*")}
        stale = sorted(committed ^ fresh_names)
        stale += [
            p.name for p in fresh if p.name in committed and not filecmp.cmp(p, committed_dir / p.name, False)
        ]
        return sorted(set(stale))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    if parser.parse_args().check:
        stale = stale_files()
        if stale:
            print(
                f"stale generated code: {', '.join(stale)}; run: python scripts/gen_protos.py",
                file=sys.stderr,
            )
            return 1
        print("generated protobuf code is up to date")
        return 0
    for path in generate(REPO):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
