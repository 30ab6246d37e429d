"""The model behind the API: a verified variant folder loaded through `runtime.open_variant` (never torch).

``load_engine`` refuses a folder that does not match its manifest, so a tampered or half-copied artifact
never answers a request; given a published set, it serves the variant `variant_choice.resolve_variant` picks
(the fastest the set measured on a CPU like this one) and logs which and why. Texts are scored with
`runtime.predict_logits`, as the manifest's measured ``batch_invariance`` allows (`runtime.batching_mode`):
padded batches, batches of requests of one exact token length (unpadded: OpenVINO int8), or one text per
model call (dynamic int8) - so a text's answer never depends on the texts it was micro-batched with.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from structbert_lite.artifact import manifest_digest, read_manifest, verify_folder
from structbert_lite.constants import polarity_ids
from structbert_lite.errors import ArtifactError, ConfigError
from structbert_lite.runtime import (
    SINGLE,
    batching_mode,
    load_tokenizer,
    open_variant,
    predict_logits,
    read_checkpoint_labels,
    softmax,
)
from structbert_lite.variant_choice import resolve_variant

from .cpu_flags import check_cpu_flags
from .settings import DEFAULT_MAX_LENGTH, ServeSettings

logger = logging.getLogger(__name__)

WARMUP_TEXT = "这部电影还不错"
# Rows per onnxruntime call (the runtime sorts by length first, so padding stays small). onnxruntime's CPU
# arena keeps its peak for good, and the peak scales with rows x max_length: on a BERT-base-shaped int8 model
# 8 x 128 tokens grew RSS by ~75 MB, 16 x 128 by ~165 MB, while the time per row barely changed.
INFER_BATCH = 8


@dataclasses.dataclass
class ArtifactInfo:
    """What /health reports about the folder being served."""

    path: Path
    name: str
    variant: str
    manifest_sha256: str
    cpu: dict[str, Any]


class Engine:
    """Scores texts; thread-safe for one caller at a time (the batcher runs it on one worker thread)."""

    def __init__(self, classifier, info: ArtifactInfo, max_length: int, overlong: str):
        self.classifier = classifier
        self.info = info
        self.max_length = max_length
        self.overlong = overlong
        self.checkpoint_labels = read_checkpoint_labels(info.path)  # id order: 负面, 正面
        # A second tokenizer without padding, only to count tokens: all of them to reject overlong texts,
        # else the first one (is there any token besides [CLS] and [SEP]?).
        self._counter = load_tokenizer(info.path, max_length)
        self._counter.no_padding()
        if overlong == "reject":
            self._counter.no_truncation()
        else:
            self._counter.enable_truncation(max_length=3)

    @property
    def labels(self) -> list[str]:
        """English label names in id order (Negative, Positive)."""
        return self.classifier.labels

    @property
    def batch_invariant(self) -> bool:
        """Whether texts share model calls at all (padded, or grouped by exact token length)."""
        return self.batching != SINGLE

    @property
    def batching(self) -> str:
        """`runtime.batching_mode` of the served variant: "padded", "equal_length" or "single"."""
        return batching_mode(self.classifier)

    def predict(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """Each text's label probabilities (softmax, id order), in input order."""
        probs = softmax(predict_logits(self.classifier, texts, INFER_BATCH))  # (texts, num_labels)
        return [tuple(float(p) for p in row) for row in probs]

    def check_texts(self, texts: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
        """(indices of texts the model would see as no token at all, [(index, tokens) over max_length]).

        The second list is empty in truncate mode. "No token" catches what the request schema's character
        check cannot know: characters this vocabulary's normalizer drops (combining marks, U+FFFD, private use).
        """
        encodings = self._counter.encode_batch(list(texts))
        empty = [i for i, e in enumerate(encodings) if len(e.ids) <= 2]  # [CLS] [SEP] only
        over = [(i, len(e.ids)) for i, e in enumerate(encodings) if len(e.ids) > self.max_length]
        return empty, (over if self.overlong == "reject" else [])

    def warm_up(self) -> float:
        """Run one request through the model; returns the seconds it took."""
        start = time.perf_counter()
        self.predict([WARMUP_TEXT])
        elapsed = time.perf_counter() - start
        release_free_heap()
        return elapsed


def release_free_heap() -> None:
    """Give glibc's free heap back to the OS: parsing the ONNX protobuf leaves ~70 MB (BERT-base int8) freed but
    still counted in RSS. A no-op where the C library is not glibc."""
    path = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(path).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def _position_limit(folder: Path) -> Optional[int]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return limit if isinstance(limit, int) and limit > 0 else None


def _manifest_max_length(manifest: dict[str, Any]) -> Optional[int]:
    """The pipeline's ``model.max_length`` from the manifest's resolved config, where it is recorded."""
    config = manifest.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    value = model.get("max_length") if isinstance(model, dict) else None
    return value if isinstance(value, int) and value >= 3 else None


def resolve_max_length(settings: ServeSettings, manifest: dict[str, Any], folder: Path) -> int:
    """--max-length, else the manifest's, else 128; never more positions than the model has."""
    limit = _position_limit(folder)
    if settings.max_length is not None:
        if limit is not None and settings.max_length > limit:
            raise ConfigError(
                f"--max-length {settings.max_length} is more than the model's {limit} positions "
                f"(config.json max_position_embeddings); use at most {limit}"
            )
        return settings.max_length
    max_length = _manifest_max_length(manifest) or DEFAULT_MAX_LENGTH
    return min(max_length, limit) if limit is not None else max_length


def check_sentiment_labels(folder: Path) -> None:
    """Refuse a folder whose ``id2label`` is not one negative and one positive class, as ``run`` refuses such a
    checkpoint (`constants.polarity_ids`): the API's ``label`` would be a raw ``id2label`` string. Checked before
    the model is loaded, so a refusal is the command's one line (nothing loaded, nothing logged)."""
    names = read_checkpoint_labels(folder)
    try:
        polarity_ids(dict(enumerate(names)))
        if len(names) != 2:
            raise ValueError(f"it has {len(names)} labels; a sentiment classifier has 2")
    except ValueError as exc:
        raise ArtifactError(
            f"refusing to serve {folder}: its config.json id2label {names} is not one negative and one "
            f"positive class ({exc}); this server answers binary sentiment (Positive/Negative) only"
        ) from None


def load_engine(artifact_dir: Path, settings: ServeSettings) -> Engine:
    """Verify ``artifact_dir`` against its manifest, check the CPU, load the model. Raises ArtifactError."""
    folder = resolve_variant(Path(artifact_dir))  # a published set: its fastest variant on this CPU
    problems = verify_folder(folder)
    if problems:
        listing = "\n  - ".join(problems)
        raise ArtifactError(
            f"refusing to serve {folder}: it does not match its manifest (tampered or incompletely copied):\n"
            f"  - {listing}\nRe-publish the variant (structbert-lite run ...) or copy the whole folder again."
        )
    manifest = read_manifest(folder)
    check_sentiment_labels(folder)
    cpu = check_cpu_flags(manifest)
    info = ArtifactInfo(
        path=folder,
        name=str(manifest.get("name") or folder.parent.name or folder.name),
        variant=str(manifest.get("variant") or folder.name),
        manifest_sha256=manifest_digest(folder),
        cpu=cpu,
    )
    max_length = resolve_max_length(settings, manifest, folder)
    start = time.perf_counter()
    classifier = open_variant(folder, max_length=max_length, threads=settings.threads, truncation=settings.truncation)
    engine = Engine(classifier, info, max_length, settings.overlong)
    logger.info(
        "loaded %s (%s on %s, manifest %s) in %.2f s: labels %s (%s), max_length %d, overlong texts %s",
        info.name, info.variant, getattr(classifier, "engine", "?"), info.manifest_sha256[:12],
        time.perf_counter() - start, engine.labels, "/".join(engine.checkpoint_labels), max_length,
        "rejected" if settings.overlong == "reject" else f"truncated ({getattr(classifier, 'truncation', 'head')})",
    )
    logger.info("%s: %s", info.variant, {
        "padded": "texts share padded model calls (its manifest measured padding harmless, not the equal-length "
                  "check: published before it)",
        "equal_length": "concurrent texts of one exact token length share a model call, unpadded (measured bit "
                        "for bit equal to each alone)",
        "single": "one text per model call (its answers change with batch neighbours), so an answer never "
                  "depends on the other texts it arrives with"}[engine.batching])
    return engine
