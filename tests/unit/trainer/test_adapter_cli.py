"""`cumulus adapters list|show` over a registry the trainer's entry point filled."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cumulus.lora import lora_task_id
from ops.cli.adapter_cmds import training_lines
from ops.cli.main import main as cli
from services.trainer.job import main as run_job


@pytest.fixture
def registry(
    tmp_path: Path,
    write_recipe: Callable[..., Path],
    job_spec: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    assert run_job([str(job_spec(write_recipe(train={"max_steps": 2}), "ad-cli"))]) == 0
    for name in [n for n in os.environ if n.startswith("CUMULUS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./cumulus.yaml here
    monkeypatch.setenv("CUMULUS_STATE_DIR", str(tmp_path))  # artifacts under <state_dir>/artifacts
    return tmp_path / "artifacts" / "adapters" / "route-tickets" / "ad-cli"


def test_list_and_show(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["adapters", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["adapters"]
    assert listed["adapter_id"] == "ad-cli" and listed["workflow"] == "route-tickets"
    assert listed["lora_task_id"] == lora_task_id("ad-cli") and listed["status"] in ("ready", "rejected")
    assert cli(["adapters", "list"]) == 0
    assert "ad-cli" in capsys.readouterr().out
    assert cli(["adapters", "show", "ad-cli"]) == 0
    assert "ok (every sha256 matches)" in capsys.readouterr().out


def test_show_flags_a_tampered_adapter(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (registry / "adapter_config.json").write_text("{}")
    assert cli(["adapters", "show", "ad-cli", "--json"]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] is False and "adapter_config.json" in shown["problem"]


def test_show_of_an_unknown_adapter_names_the_fix(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["adapters", "show", "ad-nope"]) == 1
    assert "`cumulus adapters list` shows them" in capsys.readouterr().err


def test_training_names_the_trainer_that_answered_and_how_fresh_its_job_is() -> None:
    body = {
        "trainer": {"host": "box", "pid": 42, "started_at": 1000.0},
        "job": {
            "adapter_id": "ad-1",
            "workflow": "wf",
            "phase": "train",
            "progress": 0.72,
            "step": 17,
            "total_steps": 20,
            "loss": None,
            "updated_at": 1290.0,
        },
        "recent": [{"adapter_id": "ad-0", "status": "REJECTED", "error": ""}],
    }
    lines = training_lines(body, now=1300.0).splitlines()
    assert lines[0] == "trainer box pid 42, up 5m00s"
    assert lines[1] == "training ad-1 (wf): train 72% step 17/20 loss -, last progress 10s ago"
    assert lines[2].split() == ["ad-0", "REJECTED"]
    assert training_lines({"job": None, "recent": []}, now=0.0) == "no job running\n"
