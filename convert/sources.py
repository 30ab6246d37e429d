"""Resolve a model source to a local ModelScope-layout folder.

    ModelScope id    damo/nlp_structbert_sentiment-classification_chinese-base (snapshot_download, see hub_download.py)
                     modelscope:owner/name forces the hub reading when a local folder shares the owner's name
    Hugging Face id  hf:<owner>/<name>                                         (huggingface_hub.snapshot_download)
    local directory  ./my-checkpoint, models/ckpt, /abs/path                   (used in place)
    demo             demo                                                      (trained offline by train/demo_model.py)

An ``owner/name`` spec is a hub id only when nothing local claims it: if ``owner`` is a local folder (or one
letter away from one) the spec is a mistyped path, reported at once with the nearest existing names, and
never sent to the network. Downloads run in a child process (`hub_download`) with bounded waits; a failure
is one `SourceError` line naming the hub, the id, what failed and how to go on offline.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

from structbert_lite.convert import hub_download
from structbert_lite.errors import SourceError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HF_ID = re.compile(r"^([A-Za-z0-9][\w.-]*/)?[\w.-]+$")
MODELSCOPE_PREFIX, HF_PREFIX = "modelscope:", "hf:"
# Owners that are hub ids even when a local folder has a similar name.
KNOWN_HUB_OWNERS = frozenset({"damo", "iic"})
OFFLINE_HINT = (
    "To work offline, pass a local ModelScope-layout folder with --model DIR (config.json, pytorch_model.bin "
    "or model.safetensors, vocab.txt), or run `make demo` for the embedded demo model."
)
_MAX_LISTED = 2000  # entries read from a folder when looking for near names


@dataclasses.dataclass
class ResolvedSource:
    kind: str  # "modelscope" | "huggingface" | "local" | "demo"
    id: str
    path: Path
    revision: Optional[str] = None  # what was downloaded: ModelScope branch/tag, HF commit sha; None for local
    endpoint: Optional[str] = None  # the hub URL it came from (private mirrors: MODELSCOPE_ENDPOINT, HF_ENDPOINT)


def classify(spec: str) -> str:
    """``demo`` | ``huggingface`` | ``modelscope`` | ``local``; a mistyped local path raises `SourceError`."""
    if spec == "demo":
        return "demo"
    if spec.startswith(HF_PREFIX):
        if not _HF_ID.match(spec[len(HF_PREFIX) :]):
            raise SourceError(f"{spec!r} is not a Hugging Face id: write hf:<owner>/<name>")
        return "huggingface"
    if spec.startswith(MODELSCOPE_PREFIX):
        if not _HUB_ID.match(spec[len(MODELSCOPE_PREFIX) :]):
            raise SourceError(f"{spec!r} is not a ModelScope id: write modelscope:<owner>/<name>")
        return "modelscope"
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.endswith("/") or "\\" in spec:
        return "local"
    if _HUB_ID.match(spec):
        owner = spec.split("/", 1)[0]
        if Path(owner).is_dir():
            return "local"  # `mymodels/checkpoint` with a local mymodels/: a path, never a hub id
        near = None if owner in KNOWN_HUB_OWNERS else _near_names(Path("."), owner, dirs_only=True, cutoff=0.8)
        if near:
            raise SourceError(
                f"model source {spec!r}: there is no local folder {owner!r} "
                f"(did you mean {near[0] + spec[len(owner):]!r}?) and it was not sent to ModelScope; "
                f"write {MODELSCOPE_PREFIX}{spec} if you meant the hub id"
            )
        return "modelscope"
    if spec.count("/") >= 2:
        return "local"
    raise SourceError(
        f"model source {spec!r} is neither an existing directory, a ModelScope id (owner/name) nor 'hf:owner/name'"
        + _suggestion(Path(spec))
    )


def resolve_source(spec: str, revision: str | None = None, cache_dir: str | None = None) -> ResolvedSource:
    """Download if needed and return the local folder. 'demo' is resolved by the caller (it trains)."""
    kind = classify(spec)
    if kind == "demo":
        return ResolvedSource("demo", "demo", Path(), revision)
    if kind == "local":
        path = check_local_dir(spec)
        return ResolvedSource("local", str(path), path, None)
    hub_id = spec.split(":", 1)[1] if spec.startswith((HF_PREFIX, MODELSCOPE_PREFIX)) else spec
    result = run_download(kind, hub_id, revision, cache_dir)
    shown = f"hf:{hub_id}" if kind == "huggingface" else hub_id
    logger.info("downloaded %s (revision %s) from %s into %s",
                shown, result["revision"], result["endpoint"], result["path"])
    return ResolvedSource(kind, shown, Path(result["path"]), result["revision"], result["endpoint"])


def check_local_dir(spec: str) -> Path:
    """The resolved folder for a local spec; a missing path, a file or an unfinished download is an error."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"model folder {spec!r} does not exist{_suggestion(path)}")
    if not path.is_dir():
        raise SourceError(f"model source {spec!r} is a file; pass the folder that holds config.json and the weights")
    marker = path / hub_download.INCOMPLETE_MARKER
    if marker.is_file():
        raise SourceError(
            f"{spec} is a hub download that did not finish "
            f"({hub_download.one_line(marker.read_text(encoding='utf-8'), 120)}): "
            "run it again by its hub id (it resumes and verifies), or pass a complete folder"
        )
    partial = sorted(p.name for p in path.glob("*.incomplete"))
    if partial:
        raise SourceError(
            f"{spec} holds an unfinished download ({', '.join(partial[:3])}): run the download again "
            "(it resumes and verifies), or pass a complete folder"
        )
    return path.resolve()


def _suggestion(path: Path) -> str:
    """`` (did you mean 'x'?)`` from the nearest existing ancestor's entries, or ''."""
    parts = path.parts
    for depth in range(len(parts) - 1, -1, -1):
        parent = Path(*parts[:depth]) if depth else Path(".")
        if not parent.is_dir():
            continue
        near = _near_names(parent, parts[depth])
        if near:
            guess = (parent / near[0]).joinpath(*parts[depth + 1 :])
            return f" (did you mean {str(guess)!r}?)"
        entries = _near_names(parent, parts[depth], cutoff=0.0, n=4) if depth else []
        return f" ({parent}/ holds {', '.join(sorted(entries))})" if entries else ""
    return ""


def _near_names(parent: Path, name: str, dirs_only: bool = False, cutoff: float = 0.6, n: int = 1) -> list[str]:
    try:
        entries = []
        for i, entry in enumerate(os.scandir(parent)):
            if i >= _MAX_LISTED:
                break
            if not entry.name.startswith(".") and (not dirs_only or entry.is_dir()):
                entries.append(entry.name)
    except OSError:
        return []
    return difflib.get_close_matches(name, entries, n=n, cutoff=cutoff)


def run_download(kind: str, hub_id: str, revision: str | None, cache_dir: str | None) -> dict:
    """Run `hub_download` in a child process; its result dict, or a one-line `SourceError`."""
    request = json.dumps({"kind": kind, "id": hub_id, "revision": revision, "cache_dir": cache_dir})
    shown = f"hf:{hub_id}" if kind == "huggingface" else hub_id
    logger.info("downloading %s (revision %s) from %s", shown, revision or "default",
                "the Hugging Face Hub" if kind == "huggingface" else "ModelScope")
    env = hub_download.child_env(dict(os.environ), interactive=sys.stderr.isatty())
    command = [sys.executable, "-m", "structbert_lite.convert.hub_download", request]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8")
    try:
        stdout, _ = child.communicate()
    except BaseException:  # KeyboardInterrupt: the child must not outlive us
        child.kill()
        child.wait()
        raise
    lines = [line for line in stdout.splitlines() if line.startswith(hub_download.RESULT_PREFIX)]
    if not lines:
        raise SourceError(
            f"the download of {shown} stopped without a result (exit code {child.returncode}; its log is above). "
            + OFFLINE_HINT
        )
    result = json.loads(lines[-1][len(hub_download.RESULT_PREFIX) :])
    if result["ok"]:
        return result
    message = result["message"]
    if result["kind"] in ("not_found", "revision_not_found"):
        raise SourceError(message + "; or pass a local folder with --model DIR")
    raise SourceError(f"{message}. Nothing unverified is used: a re-run resumes and checks every file. {OFFLINE_HINT}")
