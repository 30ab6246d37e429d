"""Request and response bodies of the REST API (pydantic; FastAPI derives /openapi.json from them).

The request models are built per app because the batch limit is a setting and belongs in the schema.
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, Field, StrictStr


def check_text(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty (or only whitespace); send the sentence to classify")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may carry "\ud800": a lone surrogate the tokenizer cannot take
        raise ValueError(f"text holds an unpaired surrogate {text[exc.start]!r} at character {exc.start}") from None
    return text


Text = Annotated[StrictStr, AfterValidator(check_text), Field(description="the Chinese text to classify")]


class Prediction(BaseModel):
    label: str = Field(description="the predicted label: Positive or Negative")
    score: float = Field(ge=0.0, le=1.0, description="probability of the returned label")


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
    413: {"model": ErrorBody, "description": "the body is over the size limit"},
    422: {"model": ErrorBody, "description": "a field is missing, of the wrong type, empty or too long"},
    503: {"model": ErrorBody, "description": "the server is shutting down"},
}
