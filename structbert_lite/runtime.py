"""Torch-free inference over a variant folder: onnxruntime + tokenizers + numpy.

Used by `validate/` (to score variants) and by `serve/` (to answer requests), so both see exactly the same
tokenization, padding and label mapping.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from structbert_lite.artifact import set_hint
from structbert_lite.constants import english_label
from structbert_lite.errors import ArtifactError, ConfigError, ModelFileError

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# How a text longer than max_length is cut. "head" keeps the first tokens (ModelScope's preprocessor and
# transformers do this); "head+tail" keeps the first and the last ones (`HeadTailTokenizer`).
TRUNCATIONS = ("head", "head+tail")
# Share of the head in head+tail: Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?" (sec. 5.3),
# found the first 128 + the last 382 of 510 tokens best on long reviews (IMDb, Sogou), better than head or tail
# alone. We keep that ratio at any max_length: 32 + 94 at 128 tokens, exactly 128 + 382 at 512. A review's
# verdict is often in its last sentence ("...总之不推荐"), hence the larger tail.
HEAD_SHARE = 128 / 510


def read_checkpoint_labels(folder: Path) -> list[str]:
    """The checkpoint's own label names in id order (负面, 正面 for StructBERT), from ``config.json``'s ``id2label``."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        id2label = {int(k): str(v) for k, v in config["id2label"].items()}
        return [id2label[i] for i in range(len(id2label))]
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: the folder is not a variant folder") from None
    except (KeyError, ValueError, AttributeError, TypeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} has no usable id2label ({exc!r})") from None


def read_label_names(folder: Path) -> list[str]:
    """English label names in id order (Negative, Positive): the checkpoint's names through `english_label`."""
    return [english_label(name) for name in read_checkpoint_labels(folder)]


def ensure_truncation_or_raise(truncation: str) -> str:
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"truncation must be one of {', '.join(TRUNCATIONS)}; got {truncation!r}")
    return truncation


def head_tail_split(max_length: int) -> tuple[int, int]:
    """(head, tail) content tokens kept of a long text: max_length minus [CLS] and [SEP], split by HEAD_SHARE."""
    budget = max_length - 2
    head = round(budget * HEAD_SHARE)
    return head, budget - head


class HeadTailEncoding(NamedTuple):
    ids: list[int]
    attention_mask: list[int]
    type_ids: list[int]


class HeadTailTokenizer:
    """A `tokenizers.Tokenizer` for single texts that keeps [CLS] + the first and the last tokens + [SEP].

    Texts up to ``max_length`` tokens encode exactly as with the plain tokenizer; ``encode_batch`` pads to
    the longest text. Any other attribute (``token_to_id``, ``get_vocab_size``...) is the wrapped tokenizer's.
    """

    def __init__(self, tokenizer, max_length: int):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.head, self.tail = head_tail_split(max_length)
        self._cls, self._sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        pad_id = tokenizer.token_to_id("[PAD]")
        self._pad = 0 if pad_id is None else pad_id
        if self._cls is None or self._sep is None:
            raise ArtifactError("head+tail truncation needs [CLS] and [SEP] in the vocabulary")

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def _cut(self, content: list[int]) -> list[int]:
        if len(content) > self.head + self.tail:
            content = content[: self.head] + content[len(content) - self.tail :]
        return [self._cls, *content, self._sep]

    def encode_batch(self, texts: Sequence[str]) -> list[HeadTailEncoding]:
        rows = [self._cut(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        width = max((len(r) for r in rows), default=0)
        return [
            HeadTailEncoding(r + [self._pad] * (width - len(r)), [1] * len(r) + [0] * (width - len(r)), [0] * width)
            for r in rows
        ]


def load_tokenizer(folder: Path, max_length: int, truncation: str = "head"):
    """A tokenizer that truncates to ``max_length`` tokens and pads to the longest in the batch.

    ``truncation``: "head" (a `tokenizers.Tokenizer`: [CLS] + the first max_length - 2 tokens + [SEP]) or
    "head+tail" (a `HeadTailTokenizer`: [CLS] + the first and the last tokens + [SEP], see HEAD_SHARE).
    """
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.models import WordPiece

    ensure_truncation_or_raise(truncation)
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    elif (folder / "vocab.txt").is_file():
        tokenizer = BertWordPieceTokenizer(WordPiece.read_file(str(folder / "vocab.txt")), lowercase=True)
    else:
        raise ArtifactError(f"{folder} has neither tokenizer.json nor vocab.txt")
    if truncation == "head+tail":
        return HeadTailTokenizer(tokenizer, max_length)
    tokenizer.enable_truncation(max_length=max_length)
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tokenizer


def encode(tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Tokenize with dynamic padding (to the longest text of this batch). Shapes: (batch, seq)."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),  # (batch, seq)
        "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# How texts may share a model call, from the two invariance properties validate measures per variant
# (`validate.batch_invariance`): "equal_length" - rows of one exact token length, unpadded, answer bit for bit
# as alone (OpenVINO int8: static scales, row-independent GEMMs; FP32), preferred whenever it holds, since
# padding moves answers in float even where the padding check passed (OpenVINO int8 at the demo shape: 0 on
# the check's 64 texts, 1.6e-3 logits over 2,000 reviews); "padded" - only padding was measured harmless
# (folders published before the equal-length check); "single" - neither (onnxruntime dynamic int8: one
# activation scale per batch tensor), one text per call.
PADDED, EQUAL_LENGTH, SINGLE = "padded", "equal_length", "single"


def batching_mode(classifier) -> str:
    """`EQUAL_LENGTH`, `PADDED` or `SINGLE` from the classifier's ``equal_length_invariant`` and
    ``batch_invariant`` (padding) flags; a classifier without them (the PyTorch baseline) is padded."""
    return batching_for(getattr(classifier, "equal_length_invariant", False),
                        getattr(classifier, "batch_invariant", True))


def batching_for(equal_length_invariant: bool, padding_invariant: bool) -> str:
    """The batching the two measured properties allow: equal-length rows first, else padded, else single."""
    if equal_length_invariant:
        return EQUAL_LENGTH
    return PADDED if padding_invariant else SINGLE


def equal_length_batches(tokenizer, texts: Sequence[str], batch_size: int):
    """``(indices, feed)`` per model call: texts grouped by exact token length, up to ``batch_size`` per call,
    unpadded. One tokenization pass: each row of the padded encoding cut to its own length is exactly the
    encoding of that text alone ([CLS] ... [SEP], right padding)."""
    feed = encode(tokenizer, texts)  # (rows, longest)
    lengths = feed["attention_mask"].sum(axis=1)  # (rows,)
    groups: dict[int, list[int]] = {}
    for row, length in enumerate(lengths.tolist()):
        groups.setdefault(int(length), []).append(row)
    for length in sorted(groups):
        rows = groups[length]
        for start in range(0, len(rows), batch_size):
            idx = rows[start : start + batch_size]
            yield idx, {name: np.ascontiguousarray(array[idx, :length]) for name, array in feed.items()}


def predict_logits(classifier, texts: Sequence[str], batch_size: int = 32, progress=None) -> np.ndarray:
    """Logits of any classifier with ``.tokenizer``/``.labels``/``.logits_for_encoding`` (ONNX or torch).

    Returned in input order; ``progress`` is an optional tqdm-like object updated by the number of texts per
    call. How texts share a call follows `batching_mode`: equal_length - batches of up to ``batch_size`` texts
    of one exact token length, unpadded (`equal_length_batches`), so every answer is bit for bit the text's
    answer alone; padded - length-sorted batches of ``batch_size`` with dynamic padding; single - one text per
    call, unpadded. A classifier with ``logits_for_encodings`` (OpenVINO with streams) gets up to
    `CALLS_IN_FLIGHT` calls at once.
    """
    texts = list(texts)
    out = np.zeros((len(texts), len(classifier.labels)), dtype=np.float32)  # (rows, num_labels)
    many = getattr(classifier, "logits_for_encodings", None)  # several calls in flight (OpenVINO streams)
    calls = model_calls(classifier, texts, batch_size)
    while chunk := list(itertools.islice(calls, CALLS_IN_FLIGHT if many is not None else 1)):
        feeds = [feed for _, feed in chunk]
        results = many(feeds) if many is not None else [classifier.logits_for_encoding(feeds[0])]
        for (idx, _), logits in zip(chunk, results, strict=True):
            out[idx] = logits
            if progress is not None:
                progress.update(len(idx))
    return out


CALLS_IN_FLIGHT = 64  # feeds handed to `logits_for_encodings` at once: bounds the encoded texts held in memory


def model_calls(classifier, texts: list[str], batch_size: int):
    """``(indices, feed)`` per model call, as `batching_mode` allows (see `predict_logits`)."""
    mode = batching_mode(classifier)
    if mode == EQUAL_LENGTH:
        if texts:
            yield from equal_length_batches(classifier.tokenizer, texts, max(1, batch_size))
        return
    batch_size = 1 if mode == SINGLE else batch_size
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, encode(classifier.tokenizer, [texts[i] for i in idx])


def create_session(model_path: Path, threads: int | None = None, optimize: bool = True):
    """An onnxruntime CPU session with a fixed intra-op thread budget; corrupt files get a clear error."""
    import onnxruntime as ort

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelFileError(f"ONNX model {model_path} does not exist")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors (InvalidProtobuf, Fail, ...) subclass only Exception
        raise ModelFileError(
            f"onnxruntime cannot load {model_path}: {exc}. The file is corrupt or truncated; re-run the "
            "pipeline (or `structbert-lite verify` the folder)"
        ) from None


class FolderClassifier:
    """What every inference engine over a variant folder shares: the engine supplies ``tokenizer``, ``labels``
    and ``logits_for_encoding(feed)``; scoring texts is the same for all."""

    def logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Logits for ``texts`` in order; batches are length-sorted so padding stays small."""
        return predict_logits(self, texts, batch_size)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[dict]:
        probs = softmax(self.logits(texts, batch_size))
        best = probs.argmax(axis=-1)
        return [{"label": self.labels[b], "score": float(p[b])} for b, p in zip(best, probs, strict=True)]


class OnnxClassifier(FolderClassifier):
    """Scores texts with a variant folder's ``model.onnx``."""

    engine = "onnxruntime"

    def __init__(
        self,
        folder: Path,
        max_length: int = 128,
        threads: int | None = None,
        model_file: str = "model.onnx",
        batch_invariant: bool = True,
        truncation: str = "head",
        equal_length_invariant: bool = False,
    ):
        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_invariant = batch_invariant
        self.equal_length_invariant = equal_length_invariant
        self.truncation = truncation
        self.session = create_session(self.folder / model_file, threads)
        self.tokenizer = load_tokenizer(self.folder, max_length, truncation)
        self.labels = read_label_names(self.folder)
        self._input_names = {i.name for i in self.session.get_inputs()}

    def logits_for_encoding(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in feed.items() if k in self._input_names}
        return self.session.run(["logits"], feed)[0]  # (batch, num_labels)


# Inference engines by the name a manifest records under "engine" (a dict literal, ORT MODEL_TYPES style);
# "module:Class", imported when a folder needs it, so an onnxruntime-only install never imports OpenVINO.
# Each class is built as cls(folder, max_length=, threads=, batch_invariant=, truncation=, equal_length_invariant=)
# (see open_variant).
ENGINES = {
    "onnxruntime": "structbert_lite.runtime:OnnxClassifier",
    "openvino": "structbert_lite.openvino_runtime:OpenVinoClassifier",
}


def engine_class(engine: str):
    """The classifier class of ``engine``; a clear error when it is unknown or its package is not installed."""
    import importlib

    if engine not in ENGINES:
        raise ArtifactError(f"unknown inference engine {engine!r} (known: {sorted(ENGINES)})")
    module_name, _, class_name = ENGINES[engine].partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise ArtifactError(
            f"this variant runs on {engine}, which is not installed ({exc.name}): "
            f"pip install 'structbert-lite[{engine}]'"
        ) from None


def read_manifest_if_any(folder: Path) -> dict:
    """The folder's manifest.json as a dict ({} when it has none); invalid JSON, or a published set's folder
    given where one variant belongs, is an ArtifactError."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        hint = set_hint(Path(folder))
        if hint:
            raise ArtifactError(hint)
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the folder is corrupt, re-publish it") from None
    return data if isinstance(data, dict) else {}


def variant_engine(folder: Path, manifest: dict | None = None) -> str:
    """The engine a variant folder runs on: the manifest's ``engine``, else guessed from its model file."""
    manifest = read_manifest_if_any(folder) if manifest is None else manifest
    engine = manifest.get("engine")
    if engine:
        return str(engine)
    if (Path(folder) / "openvino_model.xml").is_file() and not (Path(folder) / "model.onnx").is_file():
        return "openvino"
    return "onnxruntime"


def is_batch_invariant(manifest: dict) -> bool:
    """Whether a text's answer is independent of its batch neighbours, as measured at publish time.

    Folders without the measurement fall back on what the graph is: dynamic int8 is not batch-invariant.
    """
    measured = manifest.get("batch_invariance")
    if isinstance(measured, dict) and isinstance(measured.get("invariant"), bool):
        return measured["invariant"]
    tool = (manifest.get("quantization") or {}).get("tool", "")
    return "quantize_dynamic" not in str(tool)


def is_equal_length_invariant(manifest: dict) -> bool:
    """Whether rows of one exact token length, unpadded, answer bit for bit as alone, as measured at publish
    time (manifest ``batch_invariance.equal_length.invariant``); False where it was not measured."""
    measured = (manifest.get("batch_invariance") or {}).get("equal_length")
    return isinstance(measured, dict) and measured.get("invariant") is True


def manifest_truncation(manifest: dict) -> str:
    """The manifest's ``config.model.truncation`` (how the gate measured long texts), else "head"."""
    config = manifest.get("config")
    model_cfg = config.get("model") if isinstance(config, dict) else None
    value = model_cfg.get("truncation", "head") if isinstance(model_cfg, dict) else "head"
    if value not in TRUNCATIONS:
        raise ArtifactError(
            f"manifest config.model.truncation is {value!r}, not one of {', '.join(TRUNCATIONS)}; re-publish the folder"
        )
    return value


def open_variant(folder: Path, max_length: int | None = None, threads: int | None = None,
                 truncation: str | None = None, streams: int = 1):
    """The classifier for a published (or staged) variant folder, on the engine its manifest names.

    ``max_length`` defaults to the manifest's ``config.model.max_length``, else 128; ``truncation`` to the
    manifest's ``config.model.truncation``, else "head". Whether texts may share a model call comes from the
    manifest (`is_batch_invariant`, `is_equal_length_invariant`; see `batching_mode`). ``streams`` > 1: an
    OpenVINO variant compiled for throughput with that many streams of ``threads`` each (ignored elsewhere).
    """
    folder = Path(folder)
    manifest = read_manifest_if_any(folder)
    engine = variant_engine(folder, manifest)
    classifier_class = engine_class(engine)
    if max_length is None:
        model_cfg = (manifest.get("config") or {}).get("model") or {}
        max_length = model_cfg.get("max_length") if isinstance(model_cfg.get("max_length"), int) else 128
    truncation = manifest_truncation(manifest) if truncation is None else ensure_truncation_or_raise(truncation)
    extra = {"streams": streams} if engine == "openvino" and streams > 1 else {}
    return classifier_class(folder, max_length=max_length, threads=threads,
                            batch_invariant=is_batch_invariant(manifest), truncation=truncation,
                            equal_length_invariant=is_equal_length_invariant(manifest), **extra)
