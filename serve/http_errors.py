"""Every error the API returns is JSON ``{"error", "detail", "problems"?}`` with a 4xx status for bad input."""

from __future__ import annotations

import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import ShuttingDown

logger = logging.getLogger(__name__)


class RequestProblem(Exception):
    """A request the API refuses; becomes a JSON error response."""

    def __init__(self, status: int, error: str, detail: str, problems: Optional[list[dict]] = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.problems = status, error, detail, problems


def error_response(status: int, error: str, detail: str, problems: Optional[list[dict]] = None, headers=None):
    body: dict[str, Any] = {"error": error, "detail": detail}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, headers=headers)


def field_name(loc: tuple) -> str:
    """("body", "texts", 3) -> "texts[3]"; ("query", "format") -> "format"."""
    parts = [p for p in loc if p not in ("body", "query")] if len(loc) > 1 else list(loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def describe_validation_error(err: dict, max_batch: int) -> dict:
    field = field_name(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "too_long" and field == "texts":
        actual = (err.get("ctx") or {}).get("actual_length")
        message = f"{actual} texts is over the limit of {max_batch} per request (--max-batch); split the batch"
    elif kind == "missing":
        message = "field required"
    elif kind in ("model_attributes_type", "model_type", "dict_type") and field == "body":
        message = "the body must be a JSON object, e.g. {\"text\": \"...\"}"
    return {"field": field, "message": message}


def install_error_handlers(app: FastAPI, max_batch: int) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):  # normally caught earlier by BodyGuard
            return error_response(400, "invalid_json", "request body is not valid JSON")
        problems = [describe_validation_error(e, max_batch) for e in errors]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(422, "invalid_request", detail, problems)

    @app.exception_handler(RequestProblem)
    async def _problem(request: Request, exc: RequestProblem):
        return error_response(exc.status, exc.error, exc.detail, exc.problems)

    @app.exception_handler(ShuttingDown)
    async def _shutting_down(request: Request, exc: ShuttingDown):
        return error_response(503, "shutting_down", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        # Starlette still re-raises after this, so uvicorn logs the traceback; the client gets JSON.
        return error_response(500, "internal_error", "internal server error; see the server log")
