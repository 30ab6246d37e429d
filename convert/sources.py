"""Resolve a model source to a local ModelScope-layout folder.

    ModelScope id      damo/nlp_structbert_sentiment-classification_chinese-base  (modelscope.snapshot_download)
    Hugging Face id    hf:<owner>/<name>                                          (huggingface_hub.snapshot_download)
    local directory    ./my-checkpoint                                            (used in place)
    demo               demo                                                       (trained offline, see demo_model.py)
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Optional

from structbert_lite.errors import SourceError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
OFFLINE_HINT = (
    "To work offline, pass a local ModelScope-layout folder with --model DIR (config.json, pytorch_model.bin "
    "or model.safetensors, vocab.txt), or run `make demo` for the embedded demo model."
)
# Files a ModelScope snapshot needs for conversion; the rest of the repo (images, docs) is skipped.
_WANTED = ["*.json", "*.bin", "*.safetensors", "vocab.txt", "*.txt"]


@dataclasses.dataclass
class ResolvedSource:
    kind: str  # "modelscope" | "huggingface" | "local" | "demo"
    id: str
    path: Path
    revision: Optional[str] = None


def classify(spec: str) -> str:
    if spec == "demo":
        return "demo"
    if spec.startswith("hf:"):
        return "huggingface"
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return "local"
    if _HUB_ID.match(spec):
        return "modelscope"
    raise SourceError(
        f"model source {spec!r} is neither an existing directory, a ModelScope id (owner/name) nor 'hf:owner/name'"
    )


def resolve_source(spec: str, revision: str | None = None, cache_dir: str | None = None) -> ResolvedSource:
    """Download if needed and return the local folder. 'demo' is resolved by the caller (it trains)."""
    kind = classify(spec)
    if kind == "demo":
        return ResolvedSource("demo", "demo", Path(), revision)
    if kind == "local":
        path = Path(spec).expanduser().resolve()
        if not path.is_dir():
            raise SourceError(f"model directory {spec} does not exist")
        return ResolvedSource("local", str(path), path, revision)
    if kind == "huggingface":
        return ResolvedSource("huggingface", spec, download_huggingface(spec[3:], revision, cache_dir), revision)
    return ResolvedSource("modelscope", spec, download_modelscope(spec, revision, cache_dir), revision)


def download_modelscope(model_id: str, revision: str | None, cache_dir: str | None) -> Path:
    try:
        from modelscope import snapshot_download
    except ImportError as exc:  # pragma: no cover - modelscope is a pinned dependency
        raise SourceError(f"modelscope is not installed ({exc}); run `make setup`. {OFFLINE_HINT}") from None
    logger.info("downloading %s (revision %s) from ModelScope", model_id, revision or "default")
    try:
        kwargs = {"cache_dir": cache_dir, "allow_file_pattern": _WANTED}
        if revision:
            kwargs["revision"] = revision
        return Path(snapshot_download(model_id, **kwargs))
    except Exception as exc:  # modelscope raises NetworkError, HTTPError, ConnectionError, ValueError...
        raise SourceError(
            f"could not download {model_id!r} (revision {revision or 'default'}) from ModelScope: "
            f"{type(exc).__name__}: {str(exc)[:300]}. {OFFLINE_HINT}"
        ) from None


def download_huggingface(repo_id: str, revision: str | None, cache_dir: str | None) -> Path:
    from huggingface_hub import snapshot_download

    logger.info("downloading %s (revision %s) from the Hugging Face Hub", repo_id, revision or "main")
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=_WANTED))
    except Exception as exc:  # LocalEntryNotFoundError, HfHubHTTPError, ConnectionError...
        raise SourceError(
            f"could not download hf:{repo_id} (revision {revision or 'main'}): {type(exc).__name__}: "
            f"{str(exc)[:300]}. {OFFLINE_HINT}"
        ) from None
