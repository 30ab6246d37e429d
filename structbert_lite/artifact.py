"""Artifact folders: what a stage hands to the next, hashing, manifests, atomic publishing.

Torch-free on purpose: `serve/` imports this module to verify a folder before loading it.

A variant folder (see DESIGN.md) holds ``model.onnx``, ``config.json`` (with ``id2label``), the tokenizer
files, ``manifest.json`` and a ``README.md`` model card. The manifest lists the sha256 of every other file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from structbert_lite.errors import ArtifactError
from structbert_lite.files import fsync_dir

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
MANIFEST_SCHEMA = 1
# Files a loadable variant folder must hold, by format (tokenizer: tokenizer.json and/or vocab.txt; a checkpoint's
# weights: pytorch_model.bin or model.safetensors).
REQUIRED_FILES = {
    "onnx": (MODEL_NAME, "config.json", "tokenizer_config.json", "README.md"),
    "openvino": ("openvino_model.xml", "openvino_model.bin", "config.json", "tokenizer_config.json", "README.md"),
    "checkpoint": ("config.json", "vocab.txt", "README.md"),
}
CHECKPOINT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
# What every variant folder carries beside its model file, copied from its parent (or the tokenizer folder).
COMPANION_FILES = ("config.json", *TOKENIZER_FILES)


@dataclasses.dataclass
class Artifact:
    """A folder produced by a stage. ``meta`` travels into the manifest (source, config, metrics...)."""

    path: Path
    variant: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # "onnx" (model.onnx) | "openvino" (openvino_model.xml/.bin) | "checkpoint" (PyTorch, ModelScope layout)
    format: str = "onnx"

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_NAME


def copy_companions(src: Path, dst: Path) -> list[str]:
    """Copy the `COMPANION_FILES` that ``src`` has into ``dst``; returns their names."""
    copied = []
    for name in COMPANION_FILES:
        source = Path(src) / name
        if source.is_file() and source.resolve() != (Path(dst) / name).resolve():
            shutil.copyfile(source, Path(dst) / name)
            copied.append(name)
    return copied


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_folder(folder: Path, exclude: tuple[str, ...] = (MANIFEST_NAME,)) -> dict[str, str]:
    """sha256 of every regular file under ``folder`` (relative posix paths), sorted."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in exclude:
            hashes[rel] = sha256_file(path)
    return hashes


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def content_digest(data: dict[str, Any], field: str = "manifest_digest") -> str:
    """sha256 of ``data`` without ``field``, as canonical JSON: a manifest's digest of its own content."""
    body = {k: v for k, v in data.items() if k != field}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_manifest(folder: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json``: ``fields``, the hashes of every other file, and the digest of its own content."""
    manifest = {"schema": MANIFEST_SCHEMA, "created_at": utc_now(), **fields, "files": hash_folder(folder)}
    manifest = json.loads(json.dumps(manifest, ensure_ascii=False, default=str))  # what the file will hold
    manifest["manifest_digest"] = content_digest(manifest)
    write_json(folder / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(set_hint(Path(folder)) or (
            f"{folder} has no {MANIFEST_NAME}: it is not a published structbert-lite variant folder "
            "(point at e.g. artifacts/demo/int8-dynamic)"
        ))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the folder is corrupt, re-publish it") from exc


def set_hint(folder: Path) -> str | None:
    """For a folder that holds variant folders (a published set) rather than being one, where a variant folder
    is needed: which one to point at - the one `variant_choice.choose_variant` picks for this CPU."""
    from structbert_lite.variant_choice import choose_variant, set_variants

    names = set_variants(Path(folder))
    choice = choose_variant(Path(folder)) if names else None
    if choice is None:
        return None
    return (f"{folder} is a published set of {len(names)} variants ({', '.join(names)}), not one variant folder: "
            f"point at one of them, e.g. {choice.folder}, {choice.reason}")


def refuse_a_set(folder: Path) -> None:
    """Raise ArtifactError naming the variant to use when ``folder`` is a published set, not one variant."""
    hint = None if (Path(folder) / MANIFEST_NAME).is_file() else set_hint(Path(folder))
    if hint:
        raise ArtifactError(hint)


def manifest_digest(folder: Path) -> str:
    """sha256 of manifest.json itself: one id for the whole folder."""
    return sha256_file(Path(folder) / MANIFEST_NAME)


def unsafe_entry(rel) -> str | None:
    """Why a manifest entry is not a plain relative name of a file inside its folder (None when it is)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        return "not a plain relative file name"
    if rel.startswith("/") or Path(rel).is_absolute():
        return "an absolute path"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "it steps outside the folder or is not normalized"
    return None


def folder_entries(folder: Path) -> tuple[list[str], list[str]]:
    """(regular files, symlinks) under ``folder`` as relative posix paths; symlinks are listed, never followed."""
    files, links = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links.append(rel)
            elif name in filenames:
                files.append(rel)
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
    return sorted(files), sorted(links)


def verify_folder(folder: Path) -> list[str]:
    """Problems found checking ``folder`` against its manifest; an empty list means it verifies.

    Entries must be plain relative names of regular files inside the folder; a symlink anywhere in it is a
    problem (a published folder holds real files only); no digest of a file the manifest does not list is read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a directory"]
    try:
        manifest = read_manifest(folder)
    except ArtifactError as exc:
        return [str(exc)]
    expected = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(expected, dict) or not expected:
        return [f"{folder / MANIFEST_NAME} lists no files"]
    problems = []
    if manifest.get("manifest_digest") != content_digest(manifest):
        problems.append(f"{MANIFEST_NAME} was edited after publishing (its content does not match its manifest_digest)")
    files, links = folder_entries(folder)
    problems += [f"symlink (a published folder holds real files only): {rel} -> {os.readlink(folder / rel)}"
                 for rel in links]
    present = set(files)
    for rel, digest in sorted(expected.items(), key=lambda item: str(item[0])):
        unsafe = unsafe_entry(rel)
        if unsafe:
            problems.append(f"manifest entry {str(rel)[:80]!r} refused: {unsafe}")
        elif rel not in present:
            if rel not in links:
                problems.append(f"missing file: {rel}")
        elif sha256_file(folder / rel) != digest:
            problems.append(
                f"hash mismatch: {rel} (expected {str(digest)[:12]}…, got {sha256_file(folder / rel)[:12]}…)")
    for rel in files:
        if rel not in expected and rel != MANIFEST_NAME:
            problems.append(f"unexpected file not in manifest: {rel}")
    return problems + _missing_required(manifest.get("format") or "onnx", expected)


def ensure_verified(folder: Path, action: str = "load") -> None:
    """Raise ArtifactError (one line) unless ``folder`` is one variant folder that verifies against its manifest:
    the check `serve` and `score` make before they answer (`structbert_lite.load` makes it too)."""
    folder = Path(folder)
    refuse_a_set(folder)  # a set is not "tampered", just the wrong folder
    problems = verify_folder(folder)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ArtifactError(
            f"refusing to {action} {folder}: it does not match its manifest (tampered or incompletely copied): "
            f"{'; '.join(problems[:3])}{more}. Re-publish it or copy the whole folder again "
            "(`structbert-lite verify` lists every problem)"
        )


def _missing_required(fmt: str, listed: dict) -> list[str]:
    if fmt not in REQUIRED_FILES:
        return [f"{MANIFEST_NAME} names an unknown format {fmt!r} (expected one of {sorted(REQUIRED_FILES)})"]
    problems = [f"manifest does not list required file: {name}" for name in REQUIRED_FILES[fmt] if name not in listed]
    if "tokenizer.json" not in listed and "vocab.txt" not in listed:
        problems.append("no tokenizer file (tokenizer.json or vocab.txt)")
    if fmt == "checkpoint" and not any(name in listed for name in CHECKPOINT_WEIGHTS):
        problems.append(f"no weights ({' or '.join(CHECKPOINT_WEIGHTS)})")
    return problems


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder`` and the folder itself (before a rename makes them visible)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``final`` (same filesystem, so the rename is atomic).

    Removed on error; the caller publishes it with :func:`publish_atomically`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700: a published folder is as readable as any other
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_atomically(staged: Path, final: Path) -> Path:
    """Move a complete ``staged`` folder to ``final`` so a reader sees the old folder or the new, never half.

    The old folder (if any) is renamed aside first and deleted only after the new one is in place, so an
    interruption at any point leaves a complete folder at ``final`` or under ``.<name>.old-*`` beside it.
    """
    staged, final = Path(staged), Path(final)
    fsync_tree(staged)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    try:
        os.rename(staged, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("published %s", final)
    return final
