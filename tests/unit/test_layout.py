"""The layout is the architecture: who may import whom, checked on every import statement in the tree.

- a service (``services/<name>/``) imports the core and itself, never another service: services
  talk through Kafka, gRPC and the artifact store only;
- the core (``cumulus/``) imports no service and no operator tool: it is what they share;
- the operator tools (``ops/``) import the core, never a service: they reach services over their APIs.

Imports inside functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``, wherever it stands in the file."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def owner(module: str) -> str | None:
    """The part of the tree a dotted module belongs to: ``services.<name>``, ``cumulus``, ``ops``."""
    parts = module.split(".")
    if parts[0] == "services":
        return ".".join(parts[:2]) if len(parts) > 1 else "services"
    return parts[0] if parts[0] in ("cumulus", "ops") else None


def violations(package: str, allowed: set[str]) -> list[str]:
    """Imports in ``package``'s files of a part of the tree outside ``allowed``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "v1" in path.relative_to(ROOT).parts:
            continue  # protoc's generated code
        this = owner(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for line, module in imported_modules(path):
            target = owner(module)
            if target is not None and target != this and target not in allowed:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def services() -> list[str]:
    return sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("service", services())
def test_a_service_imports_only_the_core_and_itself(service: str) -> None:
    assert violations(f"services/{service}", {"cumulus"}) == []


def test_the_core_imports_no_service_and_no_operator_tool() -> None:
    assert violations("cumulus", set()) == []


def test_operator_tools_import_no_service() -> None:
    assert violations("ops", {"cumulus"}) == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The walker itself: a lazy import of another service inside a function is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.router.core import Router\n    import cumulus.errors\n")
    assert [owner(m) for _, m in imported_modules(module)] == ["services.router", "cumulus"]
