"""The Berkeley Function Calling Leaderboard data (``bfcl-eval``) as a workload and as a gold judge.

The demo's traffic is BFCL questions with their function docs; BFCL's own AST checker, run on
BFCL's ``possible_answer``, says whether a model's call is correct. That checker is independent
of our ``tool_call`` grader, which is what lets the demo measure the grader against gold.
"""

from __future__ import annotations

import json
import random
import sys
import types
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cumulus.errors import CumulusError
from cumulus.graders import ToolCall

# BFCL writes Python type names; JSON Schema (which the gateway validates tools against) has its own.
_JSON_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array", "bool": "boolean"}


@dataclass(frozen=True)
class BfclItem:
    id: str
    category: str
    question: str
    functions: list[dict[str, Any]]
    gold: list[dict[str, dict[str, list[Any]]]]


def data_dir() -> Path:
    try:
        import bfcl_eval
    except ImportError as exc:
        raise CumulusError(
            "the BFCL data package `bfcl-eval` is not installed",
            fix="run `bash scripts/setup.sh` (it installs scripts/model-assets.txt)",
        ) from exc
    return Path(bfcl_eval.__file__).parent / "data"


def load_items(category: str) -> list[BfclItem]:
    """Every item of one BFCL category with its question, function docs and gold answer."""
    folder = data_dir()
    questions: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for line in (folder / f"BFCL_v4_{category}.json").read_text().splitlines():
        row = json.loads(line)
        turns = row["question"][0]
        user = next((m["content"] for m in turns if m["role"] == "user"), "")
        questions[row["id"]] = (user, row["function"])
    items = []
    for line in (folder / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines():
        row = json.loads(line)
        question, functions = questions[row["id"]]
        items.append(BfclItem(row["id"], category, question, functions, row["ground_truth"]))
    return items


def split(items: list[BfclItem], train: int, seed: int = 7) -> tuple[list[BfclItem], list[BfclItem]]:
    """A fixed shuffle: the first ``train`` items are the captured traffic, the rest held out."""
    if not 0 < train < len(items):
        raise CumulusError(f"train size {train} must be between 1 and {len(items) - 1}")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:train], shuffled[train:]


def json_schema(bfcl_schema: Any) -> Any:
    """A BFCL parameter schema as JSON Schema: ``dict`` -> ``object``, ``float`` -> ``number`` ...

    ``any`` has no JSON Schema type, so its ``type`` is dropped (any value validates).
    """
    if isinstance(bfcl_schema, list):
        return [json_schema(v) for v in bfcl_schema]
    if not isinstance(bfcl_schema, dict):
        return bfcl_schema
    out: dict[str, Any] = {}
    for key, value in bfcl_schema.items():
        if key == "type" and isinstance(value, str):
            if value != "any":
                out[key] = _JSON_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: json_schema(prop) for name, prop in value.items()}
        else:
            out[key] = json_schema(value)
    return out


def tool_name(bfcl_name: str) -> str:
    """A function name as tools may spell it: BFCL's dotted names (``math.hypot``) get underscores.

    OpenAI-style tool names allow letters, digits, ``_`` and ``-`` only; BFCL does the same for
    such models and maps the answers back, as ``gold_correct`` does.
    """
    return bfcl_name.replace(".", "_")


def _ast_checker() -> Any:
    """BFCL's checker; its model-name table is stubbed (it imports every model SDK, used for '.' in names)."""
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        stub = types.ModuleType(name)
        stub.MODEL_CONFIG_MAPPING = defaultdict(lambda: types.SimpleNamespace(underscore_to_dot=False))  # type: ignore[attr-defined]
        sys.modules[name] = stub
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker


def gold_correct(item: BfclItem, calls: list[ToolCall] | None) -> bool:
    """BFCL's verdict on ``calls`` (None: the output held no parsable call, which is wrong)."""
    if not calls:
        return False
    from bfcl_eval.constants.enums import Language

    original = {tool_name(f["name"]): f["name"] for f in item.functions}
    output = [{original.get(call.name, call.name): dict(call.arguments)} for call in calls]
    try:
        result = _ast_checker()(item.functions, output, item.gold, Language.PYTHON, item.category, "cumulus")
    except Exception:  # the checker raises on shapes it does not expect: not a correct answer
        return False
    return bool(result["valid"])
