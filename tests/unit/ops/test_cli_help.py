"""Every `cumulus` command prints its --help (help strings are %-formatted by argparse: a stray
percent sign in one, such as a workload's summary, broke `cumulus demo --help`)."""

from __future__ import annotations

import argparse

import pytest

from ops.cli.main import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "cumulus"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


PARSERS = _parsers(build_parser())


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[path for path, _ in PARSERS])
def test_help_of_every_command_formats(path: str, parser: argparse.ArgumentParser) -> None:
    assert parser.format_help().startswith("usage: ")
