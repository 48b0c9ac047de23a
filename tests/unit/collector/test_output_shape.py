"""The output-shape classifier detection relies on, run by the real ClickHouse engine (chDB)."""

from __future__ import annotations

import json
import subprocess
import sys

from services.collector.insights import _BODY, _SHAPE

CASES = {
    '{"name": "area", "arguments": {"base": 10}}': "tool_call",
    '```json\n{\n  "name": "area",\n  "arguments": {"base": 10}\n}\n```': "tool_call",
    '```json\n<tool_call>\n{"name": "area", "arguments": {}}\n</tool_call>\n```': "tool_call",
    '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]': "tool_call",
    '{"total": 12.5, "currency": "EUR"}': "json",
    '```\n{"total": 12.5}\n```': "json",
    "The area is 25 square units.": "text",
    "```python\nprint(1)\n```": "text",
}


def test_fenced_and_bare_answers_get_the_shape_of_their_content() -> None:
    # A subprocess: chDB allows one session per process, and other tests own theirs.
    literals = ", ".join(_quoted(text) for text in CASES)
    rows = f"(SELECT arrayJoin([{literals}]) AS response)"
    sql = f"SELECT response, {_BODY} AS body, {_SHAPE} AS shape FROM {rows}"
    code = f"import chdb, sys; sys.stdout.write(str(chdb.query({sql!r}, 'JSONEachRow')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    shapes = {row["response"]: row["shape"] for row in map(json.loads, out.splitlines())}
    assert shapes == CASES


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"
