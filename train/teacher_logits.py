"""The teacher's logits on the transfer texts: computed once, with the fastest faithful teacher, cached by content.

Faithful means FP32: the ``fp32-optimized`` variant (parity-checked against PyTorch by its step) scores the
texts through the torch-free runtime several times faster than PyTorch; a quantized variant is refused (its
logits are not the teacher's), and a student's own variant cannot teach. When the named variant was not built
before the distill step, the PyTorch teacher scores them instead, and the record says why.

The cache key is the teacher's files (the variant folder's hashes, or the checkpoint's), the texts and the
truncation length: a re-run of the same output folder with the same teacher and data reads the logits back
(``cache: hit``); anything else changes the key (``miss``). ``<cache_dir>/teacher-logits/<key>.npy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from structbert_lite.artifact import Artifact, hash_folder
from structbert_lite.errors import ConfigError
from structbert_lite.files import atomic_path
from structbert_lite.train.transfer import texts_sha256

logger = logging.getLogger(__name__)

CACHE_FOLDER = "teacher-logits"
BATCH_SIZE = 32
KEY_FORMAT = 1


def pick_teacher(variant_name: Optional[str], parent: Artifact, artifacts: dict,
                 is_source: bool) -> tuple[Optional[Artifact], str]:
    """(the variant that scores the teacher, or None for PyTorch; why). Refuses an unfaithful variant."""
    if not variant_name:
        return None, "teacher_variant: null"
    if not is_source:
        return None, f"the parent {parent.variant} is not the source checkpoint, so {variant_name} is not its variant"
    made = artifacts.get(variant_name)
    if made is None:
        logger.warning("distill: variant %s was not built before this step; the PyTorch teacher scores the texts "
                       "(list it before the distill step for a faster run)", variant_name)
        return None, f"variant {variant_name} was not built before this step"
    if "distill" in made.meta:
        raise ConfigError(
            f"distill: teacher_variant {variant_name} is made from a distilled student, not from the teacher")
    if "quantization" in made.meta or made.format not in ("onnx", "openvino"):
        raise ConfigError(
            f"distill: teacher_variant {variant_name} is "
            f"{'quantized' if 'quantization' in made.meta else made.format}: "
            "its logits are not the teacher's; name an FP32 variant (fp32, fp32-optimized) or null for PyTorch"
        )
    return made, f"variant {variant_name}"


def teacher_digest(variant: Optional[Artifact], checkpoint_hashes: dict) -> str:
    """A hash of the files that decide the teacher's logits."""
    files = hash_folder(Path(variant.path)) if variant is not None else checkpoint_hashes
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def cache_key(digest: str, texts: Sequence[str], max_length: int) -> str:
    body = {"format": KEY_FORMAT, "teacher": digest, "max_length": max_length, "truncation": "head",
            "texts": texts_sha256(texts)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def read_cached(path: Optional[Path], rows: int, labels: int) -> Optional[np.ndarray]:
    """The cached logits if the file is there and has the right shape, else None."""
    if path is None or not path.is_file():
        return None
    try:
        logits = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable teacher-logit cache %s (%s)", path, exc)
        return None
    return logits if logits.shape == (rows, labels) and logits.dtype == np.float32 else None


def write_cached(path: Path, logits: np.ndarray) -> None:
    """Temp file + rename: a kill leaves the old cache entry or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save(path) would add .npy
        np.save(fh, logits, allow_pickle=False)


def open_teacher(variant: Optional[Artifact], model, tokenizer_dir: Path, max_length: int, threads: int):
    """A classifier with ``.tokenizer``/``.labels``/``.logits_for_encoding``: the variant's engine, or PyTorch."""
    if variant is not None:
        from structbert_lite.runtime import engine_class, variant_engine

        engine = engine_class(variant_engine(variant.path, variant.meta))
        return engine(variant.path, max_length=max_length, threads=threads, truncation="head")
    from structbert_lite.validate.torch_baseline import TorchClassifier

    return TorchClassifier(model, tokenizer_dir, max_length, threads, "head")


def teacher_logits(
    texts: Sequence[str],
    *,
    variant: Optional[Artifact],
    why: str,
    model,
    checkpoint_hashes: dict,
    tokenizer_dir: Path,
    max_length: int,
    threads: int,
    cache_dir: Optional[Path],
    quiet: bool = True,
) -> tuple[np.ndarray, dict]:
    """(logits (rows, labels) in text order, record) — read from the cache or computed and cached."""
    from structbert_lite.runtime import predict_logits, variant_engine

    started = time.perf_counter()
    key = cache_key(teacher_digest(variant, checkpoint_hashes), texts, max_length)
    path = Path(cache_dir) / CACHE_FOLDER / f"{key}.npy" if cache_dir is not None else None
    labels = model.config.num_labels
    logits = read_cached(path, len(texts), labels)
    status = "hit" if logits is not None else ("miss" if path is not None else "off")
    if logits is None:
        classifier = open_teacher(variant, model, tokenizer_dir, max_length, threads)
        with _progress(len(texts), quiet) as bar:
            logits = predict_logits(classifier, texts, BATCH_SIZE, progress=bar).astype(np.float32)
        if path is not None:
            write_cached(path, logits)
    record = {
        "scored_with": variant.variant if variant is not None else "pytorch",
        "engine": variant_engine(variant.path, variant.meta) if variant is not None else "torch",
        "why": why,
        "rows": len(texts),
        "max_length": max_length,
        "cache": status,
        "hits": int(status == "hit"),
        "misses": int(status == "miss"),
        "key": key,
        "logits_sha256": hashlib.sha256(np.ascontiguousarray(logits).tobytes()).hexdigest(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    logger.info("teacher logits for %d texts: %s (%s), cache %s, %.1f s", len(texts), record["scored_with"], why,
                status, record["seconds"])
    return logits, record


def _progress(total: int, quiet: bool):
    from structbert_lite.console import progress

    return progress(total=total, desc="teacher logits", unit="text", quiet=quiet)  # drawn on a terminal only
