"""Every Kafka topic of the system, its event type and its settings: the one place they are named.

Keys are "tenant/workflow" (codec.encode_key), so one workflow's events stay ordered in one partition
and the compacted routes topic keeps one table per workflow of each tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from cumulus.v1 import events_pb2

_WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    event_type: type[Message]
    compacted: bool = False
    retention_ms: int = _WEEK_MS
    """Ignored for compacted topics, which keep the latest value per key forever."""
    description: str = ""
    extra_configs: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        """Topic-level settings passed at creation."""
        if self.compacted:
            base = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}
        else:
            base = {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}
        return {**base, **self.extra_configs}


INFERENCE = TopicSpec(
    "cumulus.inference.v1",
    events_pb2.InferenceEvent,
    description="one event per finished request (gateway → collector)",
)
SHADOW = TopicSpec(
    "cumulus.shadow.v1",
    events_pb2.ShadowPair,
    description="live and candidate output for one prompt (gateway → judge)",
)
FEEDBACK = TopicSpec(
    "cumulus.feedback.v1",
    events_pb2.FeedbackEvent,
    description="human feedback on a request (gateway → collector, judge calibration)",
)
CANDIDATES = TopicSpec(
    "cumulus.candidates.v1",
    events_pb2.CandidateEvent,
    description="workflow nominated for fine-tuning, with its dataset (collector → trainer)",
)
ADAPTERS = TopicSpec(
    "cumulus.adapters.v1",
    events_pb2.AdapterEvent,
    retention_ms=-1,
    description="training progress and registered adapters (trainer → router, collector)",
)
VERDICTS = TopicSpec(
    "cumulus.verdicts.v1",
    events_pb2.Verdict,
    description="one grade per shadow pair (judge → router, collector)",
)
ROUTES = TopicSpec(
    "cumulus.routes.v1",
    events_pb2.RouteTable,
    compacted=True,
    description="the current RouteTable of each workflow (router → gateway)",
)
COMMANDS = TopicSpec(
    "cumulus.commands.v1",
    events_pb2.RolloutCommand,
    description="operator pause/resume/promote/rollback (CLI → router)",
)
ROLLOUTS = TopicSpec(
    "cumulus.rollouts.v1",
    events_pb2.RolloutEvent,
    retention_ms=-1,
    description="every rollout decision with its evidence (router → collector)",
)
DRIFT = TopicSpec(
    "cumulus.drift.v1",
    events_pb2.DriftSignal,
    retention_ms=-1,
    description="a promoted workflow's traffic moved from its training data (collector → router, collector)",
)
DEADLETTER = TopicSpec(
    "cumulus.kafka.deadletter.v1",
    events_pb2.DeadLetter,
    retention_ms=30 * 24 * 3600 * 1000,
    description="records no consumer could decode or process, with the reason",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    INFERENCE,
    SHADOW,
    FEEDBACK,
    CANDIDATES,
    ADAPTERS,
    VERDICTS,
    ROUTES,
    COMMANDS,
    ROLLOUTS,
    DRIFT,
    DEADLETTER,
)
BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in ALL_TOPICS}
