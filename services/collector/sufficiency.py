"""Data sufficiency of label-shaped workflows: labelled examples per label, and what would help.

A workflow is *label-shaped* when its recent live answers (the last ``detection.window_h``
hours, at most 500) are short single-line answers that repeat: the ``label`` grader's shape
(cumulus.graders.selector.detect_grader, at its default 64 characters) for at least
``LABEL_SHARE`` of them, with few distinct values (an id or a name that rarely repeats is no
class). Any other workflow gets no estimate. For a label-shaped one:

- a *labelled example* is a live-answered request whose latest feedback is gold
  (cumulus.graders.gold): a correction (its label is the correction) or a confirmation (its label
  is what live answered). A refutation says only which label is wrong, so it labels nothing;
- *labels* are the union of those seen in recent live answers and in gold, normalised as the
  label grader compares them (case, spacing and punctuation do not count);
- *never seen in gold*: labels live answered with that no labelled example has.

The label set a prompt offers is not known in general (it is in the prompt's prose, or nowhere),
so a label neither live nor any feedback ever gave is missing from the count: the estimate is a
lower bound. Duplicate prompts, which the export skips, are counted here.

The estimate: with ``detection.min_examples_per_label`` as the target, ``more_needed`` is the sum
over labels of ``max(0, target - count)`` (an unseen label counts 0), and the advice names the
thinnest labels.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cumulus.config import DetectionConfig
from cumulus.graders.base import GradeCase
from cumulus.graders.gold import Gold
from cumulus.graders.normalize import normalise_label
from cumulus.graders.selector import detect_grader
from cumulus.logs import get_logger
from services.collector.insights import LIVE_MODEL, LIVE_ROUTES
from services.collector.store import ClickHouseStore

log = get_logger("collector")
MAX_WORKFLOWS = 50
"""Most workflows estimated per call: the candidates API runs this on every dashboard refresh."""
LABEL_SHARE = 0.8
"""Share of recent live answers that must be label-shaped (the rest: refusals, stray prose)."""
MAX_LABELS = 50
"""More distinct live answers than this is free text that happens to be short, not a label set."""
THINNEST = 5
"""Labels the advice names."""
_ANSWERS_PER_WORKFLOW = 500
_GOLD_PER_WORKFLOW = 20_000

_KEYS = "(tenant, workflow) IN {keys:Array(Tuple(String, String))}"
_LIVE = f"status = 'ok' AND model = '{LIVE_MODEL}' AND route_mode IN {LIVE_ROUTES}"
_ANSWERS_SQL = f"""
SELECT tenant, workflow, response FROM {{db}}.requests FINAL
WHERE {_KEYS} AND {_LIVE} AND occurred_at >= {{since:DateTime64(3)}}
ORDER BY occurred_at DESC
LIMIT {{per_workflow:UInt32}} BY tenant, workflow
"""
# The latest note per request as one tuple: argMax over a Nullable score alone would skip a
# later note without a score and pair an older score with a newer label.
_GOLD_SQL = f"""
SELECT r.tenant AS tenant, r.workflow AS workflow, r.response AS response,
       f.note.1 AS score, f.note.2 AS label, f.note.3 AS correction
FROM (SELECT tenant, workflow, request_id, response FROM {{db}}.requests FINAL
      WHERE {_KEYS} AND {_LIVE}
        AND request_id IN (SELECT request_id FROM {{db}}.feedback WHERE tenant IN {{tenants:Array(String)}})
     ) AS r
INNER JOIN (SELECT tenant, request_id,
                   argMax(tuple(score, label, correction), (occurred_at, event_id)) AS note
            FROM {{db}}.feedback FINAL WHERE tenant IN {{tenants:Array(String)}}
            GROUP BY tenant, request_id) AS f
    ON f.tenant = r.tenant AND f.request_id = r.request_id
LIMIT {{per_workflow:UInt32}} BY tenant, workflow
"""


@dataclass(frozen=True)
class Sufficiency:
    """How well a label-shaped workflow's labels are covered by labelled examples."""

    tenant: str
    workflow: str
    labelled: int
    """Requests whose latest feedback gives the right label."""
    labels: dict[str, int] = field(default_factory=dict)
    """Every known label -> its labelled examples (0: never seen in gold), thinnest first."""
    min_per_label: int = 0
    """Fewest labelled examples of a label that has any (0 when none has)."""
    median_per_label: float = 0.0
    """Median over the labels that have labelled examples."""
    unseen_labels: list[str] = field(default_factory=list)
    """Labels live answered with that no labelled example has."""
    more_needed: int = 0
    """Labelled examples that would bring every label to the target."""
    advice: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def live_labels(answers: Iterable[str]) -> Counter[str] | None:
    """Normalised label -> count over live answers, or None when they are not label-shaped."""
    answers = [a for a in answers if a.strip()]
    labels = Counter(
        normalise_label(a) for a in answers if detect_grader(GradeCase(live=a, candidate="")) == "label"
    )
    labels.pop("", None)  # punctuation only: no label
    shaped = sum(labels.values())
    if not answers or shaped < LABEL_SHARE * len(answers):
        return None
    if len(labels) > MAX_LABELS or 2 * len(labels) > shaped:  # a class repeats; an id does not
        return None
    return labels


def gold_label(response: str, score: float | None, label: str, correction: str) -> str | None:
    """The label a request's latest feedback says is right, or None when it names none."""
    gold = Gold.from_feedback(score, label, correction)
    if gold is None or gold.kind == "refuted":
        return None
    return normalise_label(gold.correction if gold.kind == "correction" else response) or None


def estimate(
    tenant: str, workflow: str, answers: Sequence[str], gold: Sequence[str], target: int
) -> Sufficiency | None:
    """The estimate from recent live ``answers`` and the ``gold`` label of each labelled example.

    None when the answers are not label-shaped. Pure, so the arithmetic is unit-tested directly.
    """
    seen_live = live_labels(answers)
    return None if seen_live is None else coverage(tenant, workflow, seen_live, gold, target)


def coverage(
    tenant: str, workflow: str, seen_live: Iterable[str], gold: Sequence[str], target: int
) -> Sufficiency:
    """The estimate of a label-shaped workflow: ``seen_live`` labels, ``gold`` label per example."""
    counts = Counter(label for label in gold if label)
    unseen = set(seen_live) - set(counts)
    known = unseen | set(counts)
    labels = dict(sorted(((label, counts[label]) for label in known), key=lambda lc: (lc[1], lc[0])))
    present = sorted(counts.values())
    result = Sufficiency(
        tenant=tenant,
        workflow=workflow,
        labelled=sum(present),
        labels=labels,
        min_per_label=present[0] if present else 0,
        median_per_label=float(statistics.median(present)) if present else 0.0,
        unseen_labels=sorted(unseen),
        more_needed=sum(max(0, target - n) for n in labels.values()),
    )
    return replace(result, advice=advice(result, target))


def advice(s: Sufficiency, target: int) -> str:
    """The estimate in plain words: what there is, and how many more labelled examples would help."""
    with_gold = len(s.labels) - len(s.unseen_labels)
    if s.labelled:
        have = (
            f"{s.labelled} labelled examples over {with_gold} of {len(s.labels)} labels "
            f"(min {s.min_per_label}, median {s.median_per_label:g} per label)"
        )
    else:
        have = f"no labelled examples yet for its {len(s.labels)} labels"
    if not s.more_needed:
        return f"{have}; enough for {target} per label"
    thinnest = ", ".join(
        f"{label} ({'never in gold' if n == 0 else n})"
        for label, n in list(s.labels.items())[:THINNEST]
        if n < target
    )
    return (
        f"{have}; needs ~{s.more_needed} more labelled examples for {target} per label "
        f"(feedback with the right label as correction, or confirming live's answer); "
        f"thinnest: {thinnest}"
    )


async def estimates(
    db: ClickHouseStore, workflows: Sequence[tuple[str, str]], cfg: DetectionConfig
) -> list[Sufficiency]:
    """The estimate of each label-shaped workflow among the first ``MAX_WORKFLOWS`` of ``workflows``."""
    unique = list(dict.fromkeys(workflows))
    keys = unique[:MAX_WORKFLOWS]
    if not keys:
        return []
    if len(unique) > len(keys):
        log.debug("sufficiency.capped", workflows=len(unique), estimated=len(keys))
    database = f"`{db.database}`"
    params: dict[str, Any] = {"keys": keys, "per_workflow": _ANSWERS_PER_WORKFLOW}
    params["since"] = dt.datetime.now(dt.UTC) - dt.timedelta(hours=cfg.window_h)
    answers: dict[tuple[str, str], list[str]] = {key: [] for key in keys}
    for row in await db.query(_ANSWERS_SQL.replace("{db}", database), params):
        answers[(row["tenant"], row["workflow"])].append(row["response"])
    shaped = {key: seen for key in keys if (seen := live_labels(answers[key])) is not None}
    if not shaped:
        return []
    gold: dict[tuple[str, str], list[str]] = {key: [] for key in shaped}
    params.update(keys=list(shaped), per_workflow=_GOLD_PER_WORKFLOW, tenants=sorted({t for t, _ in shaped}))
    for row in await db.query(_GOLD_SQL.replace("{db}", database), params):
        label = gold_label(row["response"], row["score"], row["label"], row["correction"])
        if label is not None:
            gold[(row["tenant"], row["workflow"])].append(label)
    found = []
    for (tenant, workflow), seen in shaped.items():
        result = coverage(tenant, workflow, seen, gold[(tenant, workflow)], cfg.min_examples_per_label)
        log.debug(
            "sufficiency.estimated",
            tenant=tenant,
            workflow=workflow,
            labelled=result.labelled,
            labels=len(result.labels),
            more_needed=result.more_needed,
        )
        found.append(result)
    return found
