"""A drop-in for ModelScope's ``pipeline(Tasks.text_classification, model=...)`` over a published folder, torch-free.

    >>> import structbert_lite
    >>> classify = structbert_lite.load("artifacts/demo")      # the set: its fastest variant on this CPU
    >>> classify("这部电影太好看了")                 # ModelScope's shape
    {'scores': [0.97, 0.03], 'labels': ['正面', '负面']}
    >>> classify(["太难看了", "非常喜欢"])          # a list in, a list out
    >>> classify.predict("这部电影太好看了")         # the REST API's shape
    {'label': 'Positive', 'score': 0.97}

ModelScope's ``TextClassificationPipeline.postprocess`` takes the softmax of the logits and returns every
label's probability sorted descending, with the checkpoint's own label names (``config.json`` ``id2label``:
负面/正面). `modelscope_answer` is that formula; the REST stub answers it too (``?format=modelscope``).
Tokenization is the artifact's (truncation at its configured ``max_length``, 128 unless the pipeline config
said otherwise); texts are scored with `runtime.predict_logits`, so a text's answer never depends on the other
texts of the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from structbert_lite.constants import english_label

Texts = Union[str, Sequence[str]]


def modelscope_answer(probs: Sequence[float], names: Sequence[str]) -> dict[str, list]:
    """``{"scores", "labels"}``: every label's probability, highest first (ModelScope's pipeline output)."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])  # stable: equal scores keep id order
    return {"scores": [float(probs[i]) for i in order], "labels": [str(names[i]) for i in order]}


def label_score_answer(probs: Sequence[float], names: Sequence[str]) -> dict[str, Any]:
    """``{"label", "score"}``: the most likely label's English name (Positive/Negative) and its probability."""
    best = max(range(len(probs)), key=lambda i: probs[i])
    return {"label": english_label(names[best]), "score": float(probs[best])}


# A text is cut to this many characters per max_length token before it is tokenized: the model never sees more
# than max_length tokens, and a token of this vocabulary covers at least one character (whitespace and characters
# the normalizer drops cover none), so the answer is unchanged unless the kept characters are mostly blank. Without
# the cut, a 1 MiB body (~500k tokens) took ~500 MB to tokenize. serve, score and load() all cut so.
MAX_CHARS_PER_TOKEN = 8


def clip_text(text: str, max_chars: int, truncation: str) -> str:
    """``text`` cut to the characters the model can see: its first ``max_chars`` (head truncation), or its first
    and last ``max_chars`` joined by a space (head+tail, which keeps the last tokens too)."""
    if len(text) <= max_chars:
        return text
    if truncation == "head+tail":
        return text[:max_chars] + " " + text[-max_chars:]
    return text[:max_chars]


def clip_for_model(classifier, texts: Sequence[str], max_length: int | None = None) -> list[str]:
    """``texts`` cut with `clip_text` for ``classifier`` (its ``max_length`` and ``truncation``)."""
    max_chars = MAX_CHARS_PER_TOKEN * (max_length or getattr(classifier, "max_length", None) or 512)
    truncation = getattr(classifier, "truncation", "head")
    return [clip_text(text, max_chars, truncation) if isinstance(text, str) else text for text in texts]


def _as_list(inputs: Texts) -> tuple[list[str], bool]:
    """(texts, was_one_text); a clear TypeError for anything but a str or a sequence of str."""
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, (bytes, dict)) or not isinstance(inputs, Sequence):
        raise TypeError(f"expected a text (str) or a list of texts, got {type(inputs).__name__}")
    texts = list(inputs)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is a {type(texts[bad[0]]).__name__}, not a str")
    return texts, False


class SentimentPipeline:
    """Classifies Chinese texts with one variant folder. Callable like ModelScope's pipeline."""

    def __init__(self, folder: Path, max_length: int | None = None, threads: int | None = None,
                 truncation: str | None = None, batch_size: int = 8, verify: bool = True):
        from structbert_lite.runtime import open_variant, read_checkpoint_labels
        from structbert_lite.variant_choice import resolve_variant

        self.folder = resolve_variant(Path(folder))  # a published set: its fastest variant on this CPU (logged)
        if verify:  # the check serve and score make: a tampered or half-copied folder never answers
            from structbert_lite.artifact import ensure_verified

            ensure_verified(self.folder, "load")
        self.classifier = open_variant(self.folder, max_length=max_length, threads=threads, truncation=truncation)
        self.labels = read_checkpoint_labels(self.folder)  # id order, the checkpoint's names (负面, 正面)
        self.batch_size = batch_size

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax of the logits, (len(texts), num_labels), columns in id order."""
        from structbert_lite.runtime import predict_logits, softmax

        return softmax(predict_logits(self.classifier, clip_for_model(self.classifier, texts), self.batch_size))

    def __call__(self, inputs: Texts):
        """ModelScope's shape: ``{"scores": [...], "labels": [...]}`` sorted by score, or a list of them."""
        texts, single = _as_list(inputs)
        answers = [modelscope_answer(row, self.labels) for row in self.probabilities(texts)]
        return answers[0] if single else answers

    def predict(self, inputs: Texts):
        """The REST API's shape: ``{"label": "Positive"|"Negative", "score"}``, or a list of them."""
        texts, single = _as_list(inputs)
        answers = [label_score_answer(row, self.labels) for row in self.probabilities(texts)]
        return answers[0] if single else answers


def load(folder: Path | str, max_length: int | None = None, threads: int | None = None,
         truncation: str | None = None, verify: bool = True) -> SentimentPipeline:
    """A `SentimentPipeline` over a published variant folder (onnxruntime or OpenVINO, as its manifest says), or
    over a published set (``artifacts/demo``): then the variant its report measured fastest on a CPU like this
    one (`variant_choice.choose_variant`; ``.folder`` says which, and a log line why).

    ``max_length`` and ``truncation`` ("head" or "head+tail") default to what the folder was gated with.
    The variant folder is first checked against its manifest as ``serve`` checks it (every file's sha256,
    nothing extra, no symlink): a tampered or half-copied folder raises ArtifactError. ``verify=False`` skips
    the check (a folder you built yourself and have not published).
    """
    return SentimentPipeline(Path(folder), max_length=max_length, threads=threads, truncation=truncation,
                             verify=verify)
