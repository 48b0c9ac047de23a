"""Dataset export: a candidate workflow's captured traffic as chat-JSONL training data.

What goes in, newest request first, until ``max_examples``:

- successful requests the live model answered (route ``live`` or ``fallback``), and live's
  answers to requests a promoted adapter served, asked in shadow by the router's audit;
- a request with a feedback correction is kept with the correction as the answer; one with
  negative feedback (a low score or a negative label) and no correction is dropped;
- every text (messages, tool schemas, answer) is redacted with the tenant's detectors
  (cumulus/privacy) before anything else looks at it, so neither the files nor the dedup keys
  hold a raw value: rows stored under ``privacy.redact: store`` or ``capture`` already hold
  placeholders, and what a row from before that still holds is caught here (none for a tenant
  that opted out with ``none``);
- requests whose normalised prompt (case-folded, whitespace collapsed, roles kept, tool names)
  was already taken are duplicates and skipped; over-long examples are skipped;
- an answer that is a tool call, in whatever format the live model wrote it, is rewritten as
  canonical ``<tool_call>`` blocks (``canonical_tool_calls``), so the adapter learns one format;
- where the reviewed answers show live wrong too often (right on fewer than
  ``trust_live_below`` of at least ``min_reviewed``), live's unreviewed answers are dropped:
  training on them would teach the student live's mistakes, and scoring against them would
  punish a student for fixing them;
- the split is by a hash of the normalised prompt: the same prompt always lands on the same side,
  whichever export it is in, so a holdout prompt never leaks into a later train set.

Each line: ``{"messages": [..., {"role": "assistant", "content": answer}], "tools": [...],
"request_id": ..., "source": "live" | "correction"}`` with tools in the OpenAI function format
that chat templates take. Where feedback makes the answer gold (cumulus.graders.gold), the line
also has ``"gold": "correction" | "confirmed"``, and a corrected one ``"live_answer"`` (what live
said instead): the offline gate grades both models against gold on those lines. The manifest
records counts, filters and sha256 (cumulus.artifacts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cumulus.artifacts import ArtifactStore, Manifest
from cumulus.config import ExportConfig
from cumulus.graders import ToolSchema, parse_tool_calls, render_tool_calls
from cumulus.graders.gold import Gold
from cumulus.privacy.redactor import Redactor, untagged
from services.collector.insights import LIVE_MODEL, LIVE_ROUTES
from services.collector.store import ClickHouseStore

FORMAT = "chat-jsonl/v1"
_SPACE = re.compile(r"\s+")
_OVERFETCH = 4
"""Requests read per wanted example: duplicates and dropped feedback are skipped."""

# Live's answers: those it served, and those it gave in shadow to requests an adapter served (a
# promoted adapter's audit, or v1's answers while v2 is rolled out over it, graded against live;
# stored apart in audit_answers): each request at most once.
_REQUESTS_SQL = f"""
SELECT request_id, messages, tools, response FROM (
    SELECT request_id, messages, tools, response, occurred_at, event_id
    FROM {{db}}.requests FINAL
    WHERE tenant = {{tenant:String}} AND workflow = {{workflow:String}} AND status = 'ok'
      AND model = '{LIVE_MODEL}' AND route_mode IN {LIVE_ROUTES}
    UNION ALL
    SELECT r.request_id, r.messages, r.tools, a.response, r.occurred_at, r.event_id
    FROM (SELECT request_id, messages, tools, occurred_at, event_id FROM {{db}}.requests FINAL
          WHERE tenant = {{tenant:String}} AND workflow = {{workflow:String}}
            AND model != '{LIVE_MODEL}') AS r
    JOIN (SELECT request_id, response FROM {{db}}.audit_answers FINAL
          WHERE tenant = {{tenant:String}} AND workflow = {{workflow:String}}) AS a
        ON a.request_id = r.request_id
)
ORDER BY occurred_at DESC, event_id
LIMIT {{limit:UInt32}}
"""
_FEEDBACK_SQL = """
SELECT request_id, score, label, correction
FROM {db}.feedback FINAL
WHERE tenant = {tenant:String} AND request_id IN {ids:Array(String)}
ORDER BY occurred_at, event_id
"""


@dataclass(frozen=True)
class SourceRequest:
    request_id: str
    messages_json: str
    tools_json: str
    response: str


@dataclass(frozen=True)
class FeedbackNote:
    score: float | None
    label: str
    correction: str


@dataclass
class Dataset:
    train: list[dict[str, Any]] = field(default_factory=list)
    holdout: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)
    """Entities redacted at export, by kind (rows stored redacted add none)."""
    redaction: tuple[str, ...] = ()
    """The kinds looked for (empty: not redacted, ``privacy.redact: none``)."""
    live_reviewed_accuracy: float | None = None
    """Set where live's reviewed accuracy was too low to train on its unreviewed answers."""


def normalised_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """The dedup and split key of a prompt: case-folded, whitespace collapsed, tool names sorted."""
    parts = [f"{m.get('role', '')}\x1f{_folded(str(m.get('content', '')))}" for m in messages]
    names = sorted(str(t.get("name", "")) for t in tools)
    return "\x1e".join(parts) + "\x1d" + ",".join(names)


def holdout_bucket(key: str) -> float:
    """Where a prompt falls in [0, 1): below ``holdout_fraction`` means holdout."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def is_negative(note: FeedbackNote, cfg: ExportConfig) -> bool:
    labels = {label.casefold() for label in cfg.negative_labels}
    return note.label.casefold() in labels or (
        note.score is not None and note.score < cfg.negative_score_below
    )


def is_wrong(note: FeedbackNote, answer: str, cfg: ExportConfig) -> bool:
    """Whether ``note`` says ``answer`` was wrong: a correction that says something else (one that
    says what the answer said is a confirmation), or negative feedback (``is_negative``)."""
    if note.correction.strip():
        return _folded(note.correction) != _folded(answer)
    return is_negative(note, cfg)


def _redact_values(value: Any, redact: Callable[[str], str]) -> Any:
    """Redact every string inside parsed JSON (not the JSON text: escapes like \\n would hide PII)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_values(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_values(v, redact) for k, v in value.items()}
    return value


def _openai_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": tool} for tool in tools]


def build_dataset(
    requests: Iterable[SourceRequest],
    feedback: Mapping[str, FeedbackNote],
    cfg: ExportConfig,
    redactor: Redactor | None = None,
) -> Dataset:
    """The examples of a dataset (see the module docstring); pure, so it is tested without storage.

    ``redactor``: the tenant's (None: its texts are kept as stored, ``privacy.redact: none``)."""
    data = Dataset(redaction=redactor.kinds if redactor is not None else ())
    keys: list[str] = []
    examples: list[dict[str, Any]] = []
    seen: set[str] = set()
    for request in requests:
        data.counts["read"] += 1
        if len(examples) >= cfg.max_examples:
            data.counts["over_cap"] += 1
            continue
        note = feedback.get(request.request_id)
        answer, source = request.response, "live"
        gold = Gold.from_feedback(note.score, note.label, note.correction) if note is not None else None
        if note is not None and note.correction.strip():
            answer, source = note.correction, "correction"
        elif note is not None and is_negative(note, cfg):
            data.counts["negative_feedback"] += 1
            continue
        if not answer.strip():
            data.counts["empty_answer"] += 1
            continue

        def redact(text: str, scope: str = request.request_id) -> str:
            return redactor.redact(text, scope, data.pii) if redactor is not None else text

        try:
            messages = _redact_values(json.loads(request.messages_json), redact)
            tools = _redact_values(json.loads(request.tools_json), redact) if request.tools_json else []
        except json.JSONDecodeError:
            data.counts["malformed"] += 1
            continue
        answer = redact(answer)
        if cfg.canonical_tool_calls and tools:
            answer = _canonical_calls(answer, tools, data)
        live_answer = answer
        if source == "correction":
            live_answer = redact(request.response)
            if cfg.canonical_tool_calls and tools:
                live_answer = _canonical_calls(live_answer, tools, Dataset())
        key = normalised_prompt(messages, tools)
        if key in seen:
            data.counts["duplicate_prompt"] += 1
            continue
        seen.add(key)
        record = {
            "messages": [*messages, {"role": "assistant", "content": answer}],
            "tools": _openai_tools(tools),
            "request_id": request.request_id,
            "source": source,
        }
        if gold is not None and gold.kind in ("correction", "confirmed"):
            record["gold"] = gold.kind  # the answer is right by the feedback: the gate's reference
            if source == "correction":
                record["live_answer"] = live_answer  # what live said instead, graded against it
        if sum(len(str(m.get("content", ""))) for m in record["messages"]) > cfg.max_example_chars:
            data.counts["too_long"] += 1
            continue
        keys.append(key)
        examples.append(record)
    keys, examples = _trusted(data, keys, examples, cfg)
    for record in examples:
        data.counts[f"source_{record['source']}"] += 1
        data.counts["gold"] += "gold" in record
    _split(data, keys, examples, cfg.holdout_fraction)
    return data


def live_reviewed_accuracy(examples: Iterable[dict[str, Any]]) -> tuple[float, int]:
    """Live's accuracy on the reviewed (gold) examples, and how many there are.

    A correction that says what live said (some reviewers always send the right answer) counts as
    a confirmation.
    """
    reviewed = [r for r in examples if "gold" in r]
    right = sum(
        r["gold"] == "confirmed" or _folded(r.get("live_answer", "")) == _folded(r["messages"][-1]["content"])
        for r in reviewed
    )
    return (right / len(reviewed) if reviewed else 1.0), len(reviewed)


def _trusted(
    data: Dataset, keys: list[str], examples: list[dict[str, Any]], cfg: ExportConfig
) -> tuple[list[str], list[dict[str, Any]]]:
    accuracy, reviewed = live_reviewed_accuracy(examples)
    if reviewed < cfg.min_reviewed or accuracy >= cfg.trust_live_below:
        return keys, examples
    kept = [(k, r) for k, r in zip(keys, examples, strict=True) if "gold" in r]
    data.counts["unreviewed_live_dropped"] = len(examples) - len(kept)
    data.live_reviewed_accuracy = round(accuracy, 4)
    return [k for k, _ in kept], [r for _, r in kept]


def _folded(text: str) -> str:
    """Placeholders' tags dropped, whitespace collapsed, case-folded: how the dedup key, the
    split and the reviewed-accuracy count compare text."""
    return _SPACE.sub(" ", untagged(text)).strip().casefold()


def _canonical_calls(answer: str, tools: list[dict[str, Any]], data: Dataset) -> str:
    """``answer`` as canonical ``<tool_call>`` blocks when it is a tool call, else unchanged."""
    schemas = [ToolSchema(str(t.get("name", "")), t.get("parameters") or {}) for t in tools]
    calls = parse_tool_calls(answer, schemas)
    if not calls:
        return answer
    data.counts["canonical_tool_calls"] += 1
    return render_tool_calls(calls)


def _split(data: Dataset, keys: list[str], examples: list[dict[str, Any]], fraction: float) -> None:
    buckets = [holdout_bucket(k) for k in keys]
    holdout = {i for i, b in enumerate(buckets) if b < fraction}
    if fraction > 0 and not holdout and len(examples) >= 10:
        # A tiny dataset can miss the holdout range entirely; the offline gate needs something.
        holdout = {min(range(len(buckets)), key=buckets.__getitem__)}
    for i, example in enumerate(examples):
        (data.holdout if i in holdout else data.train).append(example)


def new_dataset_id(now: dt.datetime | None = None) -> str:
    """``ds-YYYYmmdd-HHMMSS-xxxxxx``: sorts by creation time, unique per export."""
    now = now or dt.datetime.now(dt.UTC)
    return f"ds-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def write_dataset(
    store: ArtifactStore, tenant: str, workflow: str, dataset: Dataset, base_model: str, cfg: ExportConfig
) -> Manifest:
    """Write train.jsonl, holdout.jsonl and the manifest atomically; returns the manifest."""
    dataset_id = new_dataset_id()
    with store.create("datasets", workflow, dataset_id) as writer:
        dump = lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True)  # noqa: E731
        writer.write_lines("train.jsonl", map(dump, dataset.train))
        writer.write_lines("holdout.jsonl", map(dump, dataset.holdout))
        return writer.commit(
            {
                "tenant": tenant,
                "dataset_id": dataset_id,
                "base_model": base_model,
                "format": FORMAT,
                "examples": {"train": len(dataset.train), "holdout": len(dataset.holdout)},
                "counts": dict(sorted(dataset.counts.items())),
                "pii_replaced": dict(sorted(dataset.pii.items())),
                "filters": [
                    f"status = ok, model = {LIVE_MODEL}, route in {list(LIVE_ROUTES)}",
                    "negative feedback without correction dropped; corrections replace the answer",
                    "redacted: " + (", ".join(dataset.redaction) or "nothing (privacy.redact: none)"),
                    "deduplicated by normalised prompt, newest first",
                    f"at most {cfg.max_examples} examples of at most {cfg.max_example_chars} characters",
                ],
                "split": {"holdout_fraction": cfg.holdout_fraction, "by": "sha256(normalised prompt)"},
                "live_untrusted": None
                if dataset.live_reviewed_accuracy is None
                else {
                    "reviewed_accuracy": dataset.live_reviewed_accuracy,
                    "below": cfg.trust_live_below,
                    "dropped": dataset.counts["unreviewed_live_dropped"],
                },
            }
        )


async def read_sources(
    db: ClickHouseStore, tenant: str, workflow: str, cfg: ExportConfig
) -> tuple[list[SourceRequest], dict[str, FeedbackNote]]:
    """The newest candidate requests of a workflow and the latest feedback on each."""
    params = {"tenant": tenant, "workflow": workflow, "limit": cfg.max_examples * _OVERFETCH}
    sql = _REQUESTS_SQL.replace("{db}", f"`{db.database}`")
    rows = await db.query(sql, params)
    requests = [SourceRequest(r["request_id"], r["messages"], r["tools"], r["response"]) for r in rows]
    feedback: dict[str, FeedbackNote] = {}
    ids = [r.request_id for r in requests if r.request_id]
    if ids:
        notes = await db.query(
            _FEEDBACK_SQL.replace("{db}", f"`{db.database}`"), {"tenant": tenant, "ids": ids}
        )
        for n in notes:  # oldest first, so the latest note on a request wins
            feedback[n["request_id"]] = FeedbackNote(n["score"], n["label"], n["correction"])
    return requests, feedback
