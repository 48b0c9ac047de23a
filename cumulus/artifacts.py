"""The artifact store: datasets and adapters as directories, each pinned by a manifest.

Layout under the store's root (``config.artifacts_dir``)::

    datasets/<workflow>/<dataset_id>/{train.jsonl, holdout.jsonl, manifest.json}
    adapters/<workflow>/<adapter_id>/{adapter_model.safetensors, adapter_config.json, trtllm/, manifest.json}

An artifact appears whole or not at all: ``ArtifactStore.create`` hands out a hidden staging
directory next to the final one; ``commit`` hashes every file in it, writes ``manifest.json``
(sha256 and size of each file plus the caller's fields: base model, counts, metrics ...), fsyncs,
and renames the directory into place. A crash leaves only a hidden ``.staging-*`` directory that
readers never list. Loaders call ``verify``, which refuses an artifact whose files differ from
its manifest, so a truncated copy or a hand-edited file never reaches training or serving.

``write_json_atomically`` gives one JSON file (a job's result, a report) the same guarantee.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from cumulus.errors import ArtifactError

Kind = Literal["datasets", "adapters"]
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_STAGING_PREFIX = ".staging-"
_RESERVED = frozenset({"manifest_version", "kind", "workflow", "id", "created_at", "files"})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` holds: identity, every file's digest, and the producer's fields."""

    kind: Kind
    workflow: str
    id: str
    created_at: str
    files: dict[str, FileDigest]
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        files = {name: {"sha256": d.sha256, "bytes": d.bytes} for name, d in sorted(self.files.items())}
        head = {
            "manifest_version": MANIFEST_VERSION,
            "kind": self.kind,
            "workflow": self.workflow,
            "id": self.id,
        }
        return {**head, "created_at": self.created_at, **self.fields, "files": files}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            files = {name: FileDigest(str(d["sha256"]), int(d["bytes"])) for name, d in data["files"].items()}
            fields = {k: v for k, v in data.items() if k not in _RESERVED}
            return cls(data["kind"], data["workflow"], data["id"], data["created_at"], files, fields)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"malformed manifest: {exc!r}") from exc


def path_segment(name: str) -> str:
    """``name`` as one safe directory name: no separators, never hidden, never ``..``."""
    if not name:
        raise ArtifactError("empty workflow or artifact id")
    segment = quote(name, safe="-_.~@+=")
    return "%2E" + segment[1:] if segment.startswith(".") else segment


def manifest_sha256(folder: Path) -> str:
    """sha256 of ``folder``'s manifest.json: one digest that pins every file of the artifact."""
    return file_digest(folder / MANIFEST).sha256


def file_digest(path: Path) -> FileDigest:
    """sha256 and size of one file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(digest.hexdigest(), size)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL artifact file (a dataset's train.jsonl, holdout.jsonl), parsed."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as indented JSON: readers see the old file or the new one, never part.

    The text goes to a hidden temporary file next to ``path``, is fsynced, replaces ``path``, and
    the directory is fsynced, so the new file survives a crash once this returns. Values JSON
    cannot encode (paths, datetimes) are written as their ``str()``.
    """
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # unique: concurrent writers
    try:
        with tmp.open("x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


class ArtifactStore:
    """A local directory holding datasets and adapters (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, kind: Kind, workflow: str, artifact_id: str) -> Path:
        return self.root / kind / path_segment(workflow) / path_segment(artifact_id)

    def uri(self, kind: Kind, workflow: str, artifact_id: str) -> str:
        """The ``file://`` URI events carry to point at an artifact (``CandidateEvent.dataset_uri``)."""
        return self.path(kind, workflow, artifact_id).as_uri()

    def path_from_uri(self, uri: str) -> Path:
        """The artifact ``uri`` names, which must lie inside this store: an event naming any other
        path (``file:///etc``, ``..`` segments, a symlink out) is refused, never read."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ArtifactError(f"not a local artifact URI: {uri!r}", fix="use a file:///abs/path URI")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ArtifactError(
                f"artifact URI {uri!r} is outside the artifact store {self.root}",
                fix="name an artifact under the configured state_dir/artifacts",
            )
        return path

    def list_ids(self, kind: Kind, workflow: str) -> list[str]:
        """Committed artifact ids of a workflow, oldest first by name (ids sort by creation time)."""
        parent = self.root / kind / path_segment(workflow)
        if not parent.is_dir():
            return []
        return sorted(unquote(p.name) for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))

    def create(self, kind: Kind, workflow: str, artifact_id: str) -> ArtifactWriter:
        """A writer staging a new artifact; use it as a context manager and call ``commit``."""
        final = self.path(kind, workflow, artifact_id)
        if final.exists():
            raise ArtifactError(f"{kind} artifact {artifact_id} of {workflow} already exists at {final}")
        return ArtifactWriter(kind, workflow, artifact_id, final)

    def rewrite(self, kind: Kind, workflow: str, artifact_id: str) -> ArtifactWriter:
        """A writer staging a new content for an existing artifact (an erasure rewriting a
        dataset): ``commit`` swaps it in and removes the old files. Readers may find the artifact
        missing for the moment between the two renames, never half written."""
        final = self.path(kind, workflow, artifact_id)
        if not final.is_dir():
            raise ArtifactError(f"{kind} artifact {artifact_id} of {workflow} does not exist at {final}")
        return ArtifactWriter(kind, workflow, artifact_id, final, replace=True)

    def remove(self, kind: Kind, workflow: str, artifact_id: str) -> None:
        """Delete an artifact (renamed aside first, so no reader sees it half deleted)."""
        final = self.path(kind, workflow, artifact_id)
        if final.is_dir():
            aside = final.with_name(f"{_STAGING_PREFIX}removed-{final.name}-{secrets.token_hex(4)}")
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)

    def verify(self, kind: Kind, workflow: str, artifact_id: str) -> Manifest:
        return verify_dir(self.path(kind, workflow, artifact_id))


class ArtifactWriter:
    """Files go into ``self.dir`` (directly, or through the write helpers); ``commit`` publishes them.

    Leaving the ``with`` block without ``commit`` (an exception) deletes the staging directory.
    """

    def __init__(
        self, kind: Kind, workflow: str, artifact_id: str, final: Path, replace: bool = False
    ) -> None:
        self.kind, self.workflow, self.artifact_id, self.final = kind, workflow, artifact_id, final
        self.replace = replace
        final.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX + final.name + "-", dir=final.parent))
        self.manifest: Manifest | None = None

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.manifest is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def file(self, name: str) -> Path:
        """Where a file named ``name`` (may contain ``/`` for subdirectories) goes; parents created."""
        target = (self.dir / name).resolve()
        if self.dir.resolve() not in target.parents or name == MANIFEST:
            raise ArtifactError(f"invalid artifact file name {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_bytes(self, name: str, data: bytes) -> None:
        self.file(name).write_bytes(data)

    def write_lines(self, name: str, lines: Iterable[str]) -> int:
        """Write each string as one line (JSONL); returns how many lines were written."""
        count = 0
        with self.file(name).open("w", encoding="utf-8", newline="\n") as handle:
            for line in lines:
                handle.write(line)
                handle.write("\n")
                count += 1
        return count

    def commit(self, fields: Mapping[str, Any] | None = None) -> Manifest:
        """Hash every staged file, write the manifest, and move the artifact into place atomically."""
        extra = dict(fields or {})
        clash = _RESERVED & extra.keys()
        if clash:
            raise ArtifactError(f"manifest fields {sorted(clash)} are reserved")
        files = {p.relative_to(self.dir).as_posix(): p for p in sorted(self.dir.rglob("*")) if p.is_file()}
        digests = {name: file_digest(path) for name, path in files.items()}
        created = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        manifest = Manifest(self.kind, self.workflow, self.artifact_id, created, digests, extra)
        (self.dir / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
        for path in [*files.values(), self.dir / MANIFEST]:
            _fsync(path)
        _fsync(self.dir)
        aside = self.final.with_name(f"{_STAGING_PREFIX}replaced-{self.final.name}-{secrets.token_hex(4)}")
        try:
            if self.replace:
                os.rename(self.final, aside)
            os.rename(self.dir, self.final)  # atomic; fails if another writer got there first
        except OSError as exc:
            raise ArtifactError(f"could not publish {self.final}: {exc}") from exc
        if self.replace:
            shutil.rmtree(aside, ignore_errors=True)
        _fsync(self.final.parent)
        self.manifest = manifest
        return manifest


def verify_dir(path: Path) -> Manifest:
    """Check an artifact directory against its manifest; return the manifest, or raise ArtifactError.

    Every listed file must exist with its size and sha256, and no unlisted file may be present.
    """
    manifest_path = path / MANIFEST
    try:
        manifest = Manifest.from_json(json.loads(manifest_path.read_text()))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} has no {MANIFEST}: incomplete or not an artifact") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON: {exc}") from exc
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    missing = sorted(manifest.files.keys() - present)
    unexpected = sorted(present - manifest.files.keys())
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: files differ from the manifest (missing {missing}, unlisted {unexpected})"
        )
    for name, expected in manifest.files.items():
        actual = file_digest(path / name)
        if actual != expected:
            raise ArtifactError(
                f"{path / name}: sha256 {actual.sha256[:12]}… ({actual.bytes} bytes) does not match the "
                f"manifest's {expected.sha256[:12]}… ({expected.bytes} bytes)",
                fix="the artifact was modified or truncated; export or train it again",
            )
    return manifest


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
