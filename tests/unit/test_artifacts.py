"""The artifact store: atomic publication, manifests pinning every file, verification; atomic JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumulus.artifacts import MANIFEST, ArtifactStore, path_segment, verify_dir, write_json_atomically
from cumulus.errors import ArtifactError


def make(store: ArtifactStore, artifact_id: str = "ds-1") -> Path:
    with store.create("datasets", "route tickets/v2", artifact_id) as writer:
        writer.write_lines("train.jsonl", ['{"a": 1}', '{"a": 2}'])
        writer.write_bytes("trtllm/weights.bin", b"\x00\x01")
        writer.commit({"base_model": "smollm2", "counts": {"train": 2}})
    return store.path("datasets", "route tickets/v2", artifact_id)


def test_commit_writes_a_manifest_with_every_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    folder = make(store)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {"train.jsonl", "trtllm/weights.bin"}
    assert manifest["files"]["trtllm/weights.bin"]["bytes"] == 2
    assert manifest["base_model"] == "smollm2" and manifest["id"] == "ds-1"
    assert store.verify("datasets", "route tickets/v2", "ds-1").fields["counts"] == {"train": 2}
    assert store.list_ids("datasets", "route tickets/v2") == ["ds-1"]
    assert store.path_from_uri(store.uri("datasets", "route tickets/v2", "ds-1")) == folder
    with pytest.raises(ArtifactError, match="outside the artifact store"):
        store.path_from_uri((tmp_path.parent / "etc").as_uri())


def test_a_failed_writer_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError), store.create("datasets", "wf", "ds-2") as writer:
        writer.write_lines("train.jsonl", ["{}"])
        raise RuntimeError("export crashed")
    assert list((tmp_path / "datasets" / "wf").iterdir()) == []
    assert store.list_ids("datasets", "wf") == []


@pytest.mark.parametrize("damage", ["modify", "truncate", "extra", "remove", "no_manifest"])
def test_verify_refuses_a_damaged_artifact(tmp_path: Path, damage: str) -> None:
    folder = make(ArtifactStore(tmp_path))
    train = folder / "train.jsonl"
    if damage == "modify":
        train.write_text(train.read_text().replace("1", "9"))
    elif damage == "truncate":
        train.write_text('{"a": 1}\n')
    elif damage == "extra":
        (folder / "notes.txt").write_text("hi")
    elif damage == "remove":
        train.unlink()
    else:
        (folder / MANIFEST).unlink()
    with pytest.raises(ArtifactError):
        verify_dir(folder)


def test_names_cannot_escape_the_store(tmp_path: Path) -> None:
    assert path_segment("..") == "%2E." and path_segment("a/b") == "a%2Fb"
    store = ArtifactStore(tmp_path)
    with store.create("adapters", "wf", "ad-1") as writer, pytest.raises(ArtifactError):
        writer.file("../../escape")
    make(store, "ds-1")
    with pytest.raises(ArtifactError, match="already exists"):
        make(store, "ds-1")


def test_write_json_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"status": "old"}')
    write_json_atomically(path, {"status": "READY", "where": tmp_path, "b": 1})
    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == {"b": 1, "status": "READY", "where": str(tmp_path)}
    assert list(tmp_path.iterdir()) == [path]


def test_write_json_atomically_keeps_the_old_file_when_it_cannot_finish(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"status": "old"}')
    looped: dict[str, object] = {}
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular reference"):
        write_json_atomically(path, looped)
    (tmp_path / "report").mkdir()
    with pytest.raises(OSError):
        write_json_atomically(tmp_path / "report", {"a": 1})  # a directory is in the way
    assert json.loads(path.read_text()) == {"status": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "result.json"]
