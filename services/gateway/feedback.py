"""What the gateway remembers of the requests it answered, and what it checks Feedback against.

Feedback names a request by id. The gateway keeps the last ``gateway.feedback_memory`` requests
it answered (``RecentRequests``): each one's tenant, workflow and answer shape. Feedback for a
request id it does not remember (too old, answered by another replica or before a restart) or
for another tenant's is NOT_FOUND, the two indistinguishable so no tenant learns another's ids.

The answer shape is what the judge would grade the answer as (``detect_grader``), so a
correction is refused when it cannot be an answer of that shape: the judge grades both models
against it ("gold") and the trainer trains on it. A ``json`` answer needs a JSON correction, a
``tool_call`` answer a correction calling the request's declared tools; ``label`` and
``semantic`` take any text.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from cumulus.errors import InvalidArgument, NotFound
from cumulus.graders.base import GradeCase, ToolSchema
from cumulus.graders.json_fields import parse_json_output
from cumulus.graders.selector import detect_grader
from cumulus.graders.tool_parsing import parse_tool_calls
from services.gateway.calls import Call, Outcome

ANY_TEXT = "semantic"
"""The shape of an answer nothing is known about (it failed, or nested too deeply to read)."""
_TOOL_CALL_FORMAT = '<tool_call>{"name": ..., "arguments": {...}}</tool_call> per call'
_LISTED_TOOLS = 10


@dataclass(frozen=True, slots=True)
class Answered:
    """A remembered request: its workflow, its answer's shape and, for tool calls, the declared tools."""

    workflow: str
    shape: str
    """``tool_call``, ``json``, ``label`` or ``semantic`` (see ``detect_grader``)."""
    tools: tuple[str, ...] = ()
    """Names of the tools the request declared; only kept for a ``tool_call`` answer."""


def answer_shape(text: str, tool_names: tuple[str, ...]) -> str:
    """The grader the judge would pick for ``text`` as the live answer of a request with these tools."""
    case = GradeCase(live=text, candidate="", tools=[ToolSchema(name) for name in tool_names])
    try:
        return detect_grader(case)
    except RecursionError:  # "[[[[..." defeats the JSON parser; then no shape is enforced
        return ANY_TEXT


class RecentRequests:
    """The last ``capacity`` requests answered, by (tenant, request id); the oldest is forgotten first.

    An entry costs about 400 bytes (measured, 32-character request id, derived workflow name;
    100,000 entries: ~40 MB): the OrderedDict slot, its (tenant, request id) key, the two strings
    and an ``Answered``. Tenants and shapes are strings shared between entries. Tool names (~60
    bytes each) are kept only for tool-call answers, and only the names, never their schemas.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], Answered] = OrderedDict()

    def remember(self, call: Call, outcome: Outcome) -> None:
        """Remember a finished request, with the shape of the answer its client received."""
        if self.capacity <= 0:
            return
        tools = tuple(tool.name for tool in call.capture.tools)
        shape = ANY_TEXT if outcome.error is not None else answer_shape(outcome.text, tools)
        key = (call.tenant, call.request_id)
        self._entries[key] = Answered(call.workflow.name, shape, tools if shape == "tool_call" else ())
        self._entries.move_to_end(key)  # a reused request id is as recent as its latest answer
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def lookup(self, request_id: str, tenant: str) -> Answered:
        """The remembered request ``request_id`` of ``tenant``; NotFound when there is none."""
        answered = self._entries.get((tenant, request_id))
        if answered is None:
            raise NotFound(
                f"unknown request_id {request_id!r}",
                fix=f"send feedback with the API key of the tenant that made the request, to the gateway "
                f"that answered it: a gateway remembers only the last {self.capacity} requests it "
                "answered (gateway.feedback_memory), and none from before it restarted",
            )
        return answered


def check_correction(correction: str, answered: Answered) -> None:
    """Refuse a correction that cannot be an answer of ``answered``'s shape (InvalidArgument: correction)."""
    if not correction:
        return
    try:
        if answered.shape == "json":
            _check_json(correction, answered)
        elif answered.shape == "tool_call":
            _check_tool_calls(correction, answered)
    except RecursionError as exc:
        raise InvalidArgument("correction", "nested too deeply to read") from exc


def _check_json(correction: str, answered: Answered) -> None:
    if parse_json_output(correction) is None:
        raise InvalidArgument(
            "correction",
            f"not a JSON object or array, but workflow {answered.workflow!r} answers in JSON",
            fix="send the corrected answer as the JSON the model should have written",
        )


def _check_tool_calls(correction: str, answered: Answered) -> None:
    calls = parse_tool_calls(correction, [ToolSchema(name) for name in answered.tools])
    if calls is None:
        raise InvalidArgument(
            "correction",
            f"not a tool call, but workflow {answered.workflow!r} answers with tool calls",
            fix=f"send the calls the model should have made, as {_TOOL_CALL_FORMAT}",
        )
    # No declared tools: the answer called one in an explicit format; there is no list to check against.
    unknown = next((c.name for c in calls if answered.tools and c.name not in answered.tools), None)
    if unknown is not None:
        listed = ", ".join(sorted(answered.tools)[:_LISTED_TOOLS])
        more = len(answered.tools) - _LISTED_TOOLS
        raise InvalidArgument(
            "correction",
            f"calls unknown tool {unknown[:64]!r}: the request declared {listed}"
            + (f" and {more} more" if more > 0 else ""),
            fix="correct the call with one of the tools the request declared",
        )
