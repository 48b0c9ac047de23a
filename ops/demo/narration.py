"""What the demo prints as the loop's events arrive: one line per nomination, adapter and step."""

from __future__ import annotations

from collections.abc import Callable

from cumulus.v1 import events_pb2


class Narrator:
    """``on_event`` for the observer: says what each of the services' events means."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def __call__(self, topic: str, event: object) -> None:
        if isinstance(event, events_pb2.CandidateEvent):
            self.say(
                f"[detect] nominated by {event.nominated_by}: {event.reason} "
                f"({event.train_examples} train / {event.holdout_examples} holdout examples)"
            )
        elif isinstance(event, events_pb2.AdapterEvent):
            self._adapter(event)
        elif isinstance(event, events_pb2.RolloutEvent):
            n, rate = event.evidence.get("n"), event.evidence.get("pass_rate")
            numbers = f" ({n:.0f} verdicts, pass rate {rate:.2f})" if rate is not None and n else ""
            self.say(
                f"[rollout] {event.adapter_id}: {event.from_state or 'new'} -> {event.to_state} "
                f"at {event.weight:.0%}: {event.reason}{numbers}"
            )

    def _adapter(self, event: events_pb2.AdapterEvent) -> None:
        if event.status == events_pb2.ADAPTER_STATUS_TRAINING:
            loss = event.metrics.get("loss")
            self.say(
                f"[train] {event.adapter_id} on {event.base_model} {event.progress:.0%}"
                + (f" loss {loss:.3f}" if loss else "")
            )
        else:
            status = events_pb2.AdapterStatus.Name(event.status).removeprefix("ADAPTER_STATUS_")
            self.say(f"[train] {event.adapter_id} {status}, offline score {event.offline_score:.2f}")
