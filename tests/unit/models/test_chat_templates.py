"""cumulus.chat_templates renders exactly what transformers' tokenizers render, for every catalog
model, over conversations with system prompts, tools, tool calls and tool results, pruned or not;
and the gateway imports neither transformers nor torch to do it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateError
from transformers import AutoTokenizer

from cumulus.chat_templates import ChatTemplate
from cumulus.errors import NotReady
from cumulus.models import CATALOG, ensure_model
from cumulus.prompts import render_prompt
from tests.unit.models.test_prompts import CALL, MESSAGES, SHARED_MODELS, TOOLS

REPO = Path(__file__).resolve().parents[3]
CONVERSATIONS: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = [
    ([{"role": "user", "content": "hi"}], None),
    (MESSAGES, None),
    (MESSAGES, TOOLS),
    ([*MESSAGES, CALL, {"role": "tool", "content": '{"sky": "grey", "note": "<b>&</b>"}'}], TOOLS),
    (
        [*MESSAGES, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "Ünïcode ✓?"}],
        TOOLS,
    ),
]


@pytest.mark.parametrize("model_id", sorted(CATALOG))
def test_every_catalog_template_renders_as_transformers_does(model_id: str) -> None:
    folder = ensure_model(model_id, SHARED_MODELS)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    template = ChatTemplate.from_folder(folder)
    for messages, tools in CONVERSATIONS:
        for prune in ((), ("system",), ("system", "tools")):
            try:
                expected = render_prompt(tokenizer, messages, tools, prune=prune)
            except TemplateError as refused:  # a template refusing the conversation refuses it here too
                with pytest.raises(TemplateError, match=str(refused)[:40]):
                    render_prompt(template, messages, tools, prune=prune)
                continue
            assert render_prompt(template, messages, tools, prune=prune) == expected, (model_id, prune)


def test_a_folder_not_converted_yet_says_how_to_convert_it(tmp_path: Path) -> None:
    with pytest.raises(NotReady, match="cumulus prepare --models"):
        ChatTemplate.from_folder(tmp_path)


def test_the_gateway_imports_neither_transformers_nor_torch() -> None:
    probe = (
        "import sys, services.gateway.__main__\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == ""
