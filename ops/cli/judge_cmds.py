"""`cumulus judge calibrate [--json]` — how far each grader agrees with human reviewers.

Reads the judge's store (grades it computed, joined by request id with the human feedback it
consumed from cumulus.feedback.v1; see cumulus/graders/calibration.py for how feedback becomes a
pass/fail). Exit code 3 when a grader or the LLM judge is flagged, so scripts and CI can gate on it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.errors import NotFound
from cumulus.graders.calibration import CalibrationReport
from cumulus.graders.store import judge_store_path, read_calibration

FLAGGED_EXIT = 3


def register(sub: Any) -> None:
    judge = sub.add_parser("judge", help="the judge's graders")
    judge_sub = judge.add_subparsers(dest="judge_command", required=True)
    calibrate = judge_sub.add_parser("calibrate", help="agreement of each grader with human feedback")
    calibrate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    calibrate.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace, config: CumulusConfig) -> int:
    report = read_calibration(config)
    if report is None:
        raise NotFound(
            f"no judge store at {judge_store_path(config)}",
            fix="start the judge (cumulus up) and let it grade pairs",
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report))
    flagged = report.position_flagged or any(g.flagged for g in report.graders)
    return FLAGGED_EXIT if flagged else 0


def render(report: CalibrationReport) -> str:
    """The report as a table a person reads."""
    lines = [f"{'grader':<10} {'reviewed':>8} {'accuracy':>8} {'kappa':>7}  note"]
    for g in report.graders:
        accuracy = "-" if g.accuracy is None else f"{g.accuracy:.3f}"
        kappa = "-" if g.kappa is None else f"{g.kappa:.3f}"
        mark = "FLAGGED: " if g.flagged else ""
        lines.append(f"{g.grader:<10} {g.reviewed:>8} {accuracy:>8} {kappa:>7}  {mark}{g.note}")
    if not report.graders:
        lines.append("(no graded pair has human feedback yet)")
    consistency = "-" if report.position_consistency is None else f"{report.position_consistency:.3f}"
    judge_mark = "  FLAGGED: answers depend on the order" if report.position_flagged else ""
    lines.append(f"\nLLM judge: {report.judged_pairs} pairs, position consistency {consistency}{judge_mark}")
    lines.append(f"feedback: {report.feedback_events} events, {report.unusable_feedback} without a pass/fail")
    return "\n".join(lines)
