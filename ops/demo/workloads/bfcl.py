"""(d) BFCL tool calling: the narrow application built from BFCL questions (ops.demo.narrow).

The application: "turn a user's request into a call of the function it provides", one fixed
system prompt, the function docs as the request's ``tools``. BFCL's own AST checker on BFCL's
``possible_answer`` is the gold check, independent of the judge's ``tool_call`` grader, which is
what lets the report measure the grader against gold. No feedback: the loop learns from live.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from cumulus.graders import ToolSchema, parse_tool_calls
from cumulus.v1 import common_pb2, gateway_pb2
from ops.demo.bfcl import BfclItem, gold_correct, json_schema, load_items, tool_name
from ops.demo.narrow import narrow_app
from ops.demo.workloads.base import Workload

TOOLS = 12
"""Functions of the application."""


class BfclWorkload(Workload):
    name: ClassVar[str] = "bfcl"
    summary: ClassVar[str] = f"BFCL simple_python questions as an app with {TOOLS} tools; no feedback"
    system_prompt: ClassVar[str] = (
        "You are the API assistant of a developer platform. Answer every user request with a call "
        "to one of the provided functions, filling in the arguments from the request."
    )
    max_tokens: ClassVar[int] = 128  # a call is 20-80 tokens; a runaway answer stops here
    broken_adapter_stage: ClassVar[bool] = True
    targets: ClassVar[dict[str, Any]] = {
        "detection_to_promotion_seconds": ("<=", 900.0),
        "gold_accuracy_ratio": (">=", 0.95),
        "cost_ratio": (">=", 4.0),
        "grader_vs_gold_agreement": (">=", 0.95),
    }

    def items(self, capture: int, held_out: int) -> tuple[list[BfclItem], list[BfclItem]]:
        return narrow_app(load_items("simple_python"), TOOLS, capture, held_out)

    def correct(self, item: BfclItem, text: str) -> bool:
        tools = [ToolSchema(f["name"], f.get("parameters", {})) for f in item.functions]
        return gold_correct(item, parse_tool_calls(text, tools))

    def correction(self, item: BfclItem) -> str:
        raise NotImplementedError("the BFCL workload sends no feedback")

    def request(self, item: BfclItem, request_id: str) -> gateway_pb2.GenerateRequest:
        return request_for(item, request_id, self.system_prompt, self.max_tokens)


def request_for(
    item: BfclItem,
    request_id: str,
    system_prompt: str = BfclWorkload.system_prompt,
    max_tokens: int = BfclWorkload.max_tokens,
) -> gateway_pb2.GenerateRequest:
    """The gateway request of one BFCL question, its functions as the request's tools."""
    tools = [
        common_pb2.Tool(
            name=tool_name(f["name"]),
            description=f.get("description", ""),
            parameters_json=json.dumps(json_schema(f.get("parameters", {"type": "object"}))),
        )
        for f in item.functions
    ]
    return gateway_pb2.GenerateRequest(
        request_id=request_id,
        messages=[
            common_pb2.ChatMessage(role="system", content=system_prompt),
            common_pb2.ChatMessage(role="user", content=item.question),
        ],
        tools=tools,
        params=common_pb2.GenerationParams(max_tokens=max_tokens, temperature=0.0),
        session_key=request_id,
    )
