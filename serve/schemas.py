"""Request and response bodies of the REST API (pydantic; FastAPI derives /openapi.json from them).

The request models are built per app because the batch limit is a setting and belongs in the schema.
"""

from __future__ import annotations

import enum
import unicodedata
from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, Field, StrictStr

from structbert_lite.constants import ENGLISH_LABELS, MODELSCOPE_LABELS, POLARITIES

# Characters that show nothing: controls (NUL...), format characters (U+200B zero-width space, U+200D
# zero-width joiner, U+FEFF BOM, soft hyphen...) and separators. The tokenizer drops them all, so a text made
# only of them would reach the model as [CLS] [SEP] and get a confident label for nothing.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
EMPTY_TEXT_MESSAGE = (
    "text is empty (or only whitespace or invisible characters such as U+200B, U+FEFF, NUL); "
    "send the sentence to classify"
)
# The same answer for a text whose every character the tokenizer drops (checked by the engine, which knows it).
NO_TOKEN_MESSAGE = (
    "text is empty once tokenized: this model's tokenizer drops every character of it (e.g. combining marks, "
    "U+FFFD, private-use characters); send the sentence to classify"
)


def is_blank(text: str) -> bool:
    """True when ``text`` has no visible character (whitespace, controls and format characters only)."""
    return all(ch.isspace() or unicodedata.category(ch) in INVISIBLE_CATEGORIES for ch in text)


def check_text(text: str) -> str:
    if is_blank(text):
        raise ValueError(EMPTY_TEXT_MESSAGE)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may carry "\ud800": a lone surrogate the tokenizer cannot take
        raise ValueError(f"text holds an unpaired surrogate {text[exc.start]!r} at character {exc.start}") from None
    return text


Text = Annotated[StrictStr, AfterValidator(check_text), Field(description="the Chinese text to classify")]


LABEL_NAMES_DOC = ", ".join(f"{ENGLISH_LABELS[p]} = {MODELSCOPE_LABELS[p]}" for p in POLARITIES)


class AnswerFormat(str, enum.Enum):
    """Shape of each answer: ``default`` {label, score} or ``modelscope`` {scores, labels} (ModelScope's pipeline)."""

    default = "default"
    modelscope = "modelscope"


class Prediction(BaseModel):
    label: str = Field(
        description=f"the predicted label, Positive or Negative (the checkpoint's names: {LABEL_NAMES_DOC})"
    )
    score: float = Field(ge=0.0, le=1.0, description="probability of the returned label")


class ModelScopePrediction(BaseModel):
    """What ModelScope's ``pipeline(Tasks.text_classification, ...)`` returns: softmax, sorted descending."""

    scores: list[float] = Field(description="every label's probability, highest first")
    labels: list[str] = Field(description=f"the checkpoint's label names in the same order ({LABEL_NAMES_DOC})")


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable error code, e.g. invalid_json, body_too_large")
    detail: str = Field(description="what is wrong with the request, in words")
    problems: Optional[list[dict]] = Field(None, description="one entry per invalid field: {field, message}")


def build_request_models(max_batch: int):
    class PredictRequest(BaseModel):
        text: Text

    class PredictBatchRequest(BaseModel):
        texts: list[Text] = Field(max_length=max_batch, description=f"up to {max_batch} texts, answered in order")

    return PredictRequest, PredictBatchRequest


ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "the body is not UTF-8 JSON"},
    408: {"model": ErrorBody,
          "description": "the request did not arrive within --read-timeout-s; the connection is closed"},
    413: {"model": ErrorBody, "description": "the body is over the size limit"},
    422: {"model": ErrorBody, "description": "a field is missing, of the wrong type, empty (or only invisible "
                                             "characters), or too long; or an unknown ?format"},
    503: {"model": ErrorBody, "description": "the server is shutting down"},
}
