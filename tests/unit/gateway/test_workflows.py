"""Workflow fingerprints: the same template lands in the same workflow, across runs and data."""

from services.gateway.workflows import fingerprint, resolve_chat, resolve_text, static_prefix


def chat(system: str, user: str) -> list[tuple[str, str]]:
    return [("system", system), ("user", user)] if system else [("user", user)]


def test_pinned_value_is_stable_across_processes() -> None:
    # blake2b of fixed text: a change here re-buckets every derived workflow in production.
    assert fingerprint("acme", "You route support tickets.", ["assign"], "ignored") == "69069c3064d50a27"


def test_same_system_prompt_and_tools_with_different_data_match() -> None:
    a = resolve_chat(
        "acme", "", chat("Route tickets. Today is 2024-05-01.", "My printer is on fire"), ["assign"]
    )
    b = resolve_chat("acme", "", chat("Route  tickets.\nToday is 2025-12-31.", "Refund please"), ["assign"])
    assert a == b and a.derived and a.name == "wf-" + a.fingerprint


def test_without_a_system_prompt_tool_names_decide_in_any_order() -> None:
    base = chat("", "x")
    assert resolve_chat("t", "", base, ["a", "b"]) == resolve_chat("t", "", base, ["b", "a"])
    assert resolve_chat("t", "", base, ["a"]) != resolve_chat("t", "", base, ["a", "c"])


def test_a_system_prompt_keeps_per_request_tools_in_one_workflow() -> None:
    # Function calling as a service: the tools change with every request, the app does not.
    base = chat("You turn requests into API calls.", "x")
    assert resolve_chat("t", "", base, ["area_of_triangle"]) == resolve_chat("t", "", base, ["get_weather"])


def test_different_system_prompts_differ() -> None:
    assert resolve_chat("t", "", chat("Extract invoice fields.", "x"), []) != resolve_chat(
        "t", "", chat("Summarise the ticket.", "x"), []
    )


def test_without_system_or_tools_the_static_prefix_decides() -> None:
    a = resolve_chat("t", "", chat("", "Classify this ticket: 'printer broken'"), [])
    b = resolve_chat("t", "", chat("", "Classify this ticket: 'refund for order 42'"), [])
    c = resolve_chat("t", "", chat("", "Translate to French: 'hello'"), [])
    assert a == b and a != c


def test_tenants_never_share_a_derived_workflow() -> None:
    assert resolve_chat("acme", "", chat("Same.", "x"), []) != resolve_chat(
        "globex", "", chat("Same.", "x"), []
    )


def test_named_workflow_wins_but_keeps_the_fingerprint() -> None:
    named = resolve_chat("t", "tickets", chat("Route tickets.", "x"), [])
    derived = resolve_chat("t", "", chat("Route tickets.", "x"), [])
    assert named.name == "tickets" and not named.derived and named.fingerprint == derived.fingerprint


def test_static_prefix_stops_at_variable_content() -> None:
    assert static_prefix("Summarise:  the call of 2024-01-02 with Bob") == "summarise: the call of"
    assert static_prefix("x" * 100) == "x" * 48


def test_raw_prompts_use_their_prefix() -> None:
    a = resolve_text("t", "", "<|im_start|>system\nYou route tickets.<|im_end|>\n<|im_start|>user\nA")
    b = resolve_text("t", "", "<|im_start|>system\nYou route tickets.<|im_end|>\n<|im_start|>user\nB")
    assert a == b and a.derived
