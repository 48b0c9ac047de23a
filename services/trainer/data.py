"""Training examples from an exported dataset, rendered exactly as the gateway will serve them.

A dataset line (services/collector/export.py) is ``{"messages": [..., {"role": "assistant",
"content": answer}], "tools": [...]}``. Its prompt is everything before the answer, rendered by
``cumulus.prompts.render_prompt`` with the base model's tokenizer (the gateway's renderer) and
tokenized the way the backend tokenizes ``text_input``; the answer is followed by the EOS token the
backend stops on. With ``completion_only`` the prompt's labels are masked (-100).

Packing puts several examples in one row (first fit, in a seeded order); the position ids restart
at 0 for each example, which is how transformers' attention keeps packed examples apart
(``find_packed_sequence_indices``: no attention across examples, no cross-example loss).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cumulus.prompts import render_prompt

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    """Aligned with ``input_ids``: the token itself where it is trained on, else IGNORE."""


@dataclass(frozen=True)
class HoldoutPrompt:
    """A holdout example as the offline gate needs it: the prompt, the live answer, the tools."""

    prompt: str
    live: str
    """What the live model answered."""
    tools: list[dict[str, Any]]
    gold: str | None = None
    """The right answer by the request's feedback (a correction, or live's answer confirmed)."""


def split_record(record: dict[str, Any]) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """(prompt messages, answer, tools) of one dataset line; ValueError when it has no final answer."""
    messages = list(record.get("messages") or [])
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise ValueError("a dataset example must end with the assistant's answer")
    return messages[:-1], str(messages[-1].get("content") or ""), list(record.get("tools") or [])


def tool_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """Every tool offered in ``records`` (OpenAI function format): what an adapter trained with
    pruned tool schemas learns, and so the only tools the gateway lets it answer for."""
    names = {
        str((tool.get("function") or tool).get("name", ""))
        for record in records
        for tool in record.get("tools") or []
    }
    return sorted(names - {""})


def render(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]], prune: Sequence[str]
) -> str:
    return render_prompt(tokenizer, messages, tools or None, prune=prune).text


def tokenize(
    records: Iterable[dict[str, Any]],
    tokenizer: Any,
    *,
    max_seq_len: int,
    completion_only: bool,
    prune: Sequence[str] = (),
    counts: Counter[str] | None = None,
) -> list[Example]:
    """One ``Example`` per usable record; too long or malformed ones are counted and skipped."""
    counts = Counter() if counts is None else counts
    examples = []
    for record in records:
        try:
            messages, answer, tools = split_record(record)
        except ValueError:
            counts["malformed"] += 1
            continue
        prompt_ids = tokenizer(render(tokenizer, messages, tools, prune)).input_ids
        answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False).input_ids
        if len(prompt_ids) + len(answer_ids) > max_seq_len:
            counts["too_long"] += 1  # cut, it would teach the model to stop mid-answer, or never
            continue
        labels = [IGNORE] * len(prompt_ids) if completion_only else [IGNORE, *prompt_ids[1:]]
        examples.append(Example(prompt_ids + answer_ids, labels + answer_ids))
        counts["examples"] += 1
    return examples


def holdout_prompts(
    records: Iterable[dict[str, Any]], tokenizer: Any, prune: Sequence[str] = ()
) -> list[HoldoutPrompt]:
    out = []
    for record in records:
        messages, answer, tools = split_record(record)
        live, gold = answer, None
        if record.get("gold") == "confirmed":
            gold = answer
        elif record.get("gold") == "correction" and "live_answer" in record:
            live, gold = str(record["live_answer"]), answer
        out.append(HoldoutPrompt(render(tokenizer, messages, tools, prune), live, tools, gold))
    return out


def pack(examples: Sequence[Example], max_seq_len: int, seed: int) -> list[list[Example]]:
    """Rows of examples whose lengths sum to at most ``max_seq_len`` (first fit, seeded order)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows: list[list[Example]] = []
    room: list[int] = []
    for index in order:
        example = examples[index]
        size = len(example.input_ids)
        slot = next((r for r, free in enumerate(room) if free >= size), None)
        if slot is None:
            rows.append([example])
            room.append(max_seq_len - size)
        else:
            rows[slot].append(example)
            room[slot] -= size
    return rows


def collate(rows: Sequence[Sequence[Example]], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``labels`` and per-example ``position_ids`` of a batch of rows.

    The width is rounded up to a ``multiple``: few distinct shapes, so CPU kernels specialised for
    a shape (oneDNN's bf16 matmuls are JIT-compiled per shape) are built once, not every step.
    """
    longest = max(sum(len(e.input_ids) for e in row) for row in rows)
    width = -(-longest // multiple) * multiple
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for example in row:
            end = start + len(example.input_ids)
            input_ids[r, start:end] = torch.tensor(example.input_ids)
            labels[r, start:end] = torch.tensor(example.labels)
            positions[r, start:end] = torch.arange(end - start)
            start = end
        positions[r, start:] = torch.arange(width - start)  # padding: a sequence of its own
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions}


def trained_tokens(rows: Sequence[Sequence[Example]]) -> int:
    """Positions of ``rows`` the loss is computed on."""
    return sum(label != IGNORE for row in rows for example in row for label in example.labels)


def batches(rows: Sequence[Sequence[Example]], batch_size: int, seed: int) -> list[list[Sequence[Example]]]:
    """Rows in a seeded order, ``batch_size`` at a time (the last batch may be smaller)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    shuffled = [rows[i] for i in order]
    return [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]
