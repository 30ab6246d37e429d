"""The FastAPI app: POST /predict, POST /predict_batch, GET /health, GET /stats, GET / (web UI).

``create_app`` verifies and loads the artifact before it returns (a tampered folder raises ArtifactError);
the warm-up request runs once the server has started, and /health says "ready" only after it answered.
The cache and the micro-batcher hold label probabilities; each answer is shaped from them on the way out
(``{label, score}``, or ModelScope's ``{scores, labels}`` with ``?format=modelscope``).
"""

# No `from __future__ import annotations` here: FastAPI must resolve the per-app request models in the
# route signatures at runtime, and they are local classes.
import asyncio
import contextlib
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from structbert_lite import __version__
from structbert_lite.api import clip_for_model, label_score_answer, modelscope_answer
from structbert_lite.publish.output_set import current_run_id, run_of_variant

from .batcher import MicroBatcher
from .cache import PredictionCache
from .engine import INFER_BATCH, Engine, load_engine
from .http_errors import RequestProblem, install_error_handlers
from .middleware import AccessLog, BodyGuard
from .schemas import (
    ERROR_RESPONSES,
    NO_TOKEN_MESSAGE,
    AnswerFormat,
    ModelScopePrediction,
    Prediction,
    build_request_models,
)
from .settings import ServeSettings

logger = logging.getLogger(__name__)

# The page may talk to this server only: no script, style or font from anywhere else.
PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"
)


PREDICT_DOC = (
    "Default answer: {label: Positive|Negative, score: probability of that label}. With ?format=modelscope: "
    "{scores: [...], labels: [...]}, every label's probability sorted descending with the checkpoint's label "
    "names (正面/负面), as ModelScope's pipeline(Tasks.text_classification) returns it."
)
FORMAT_QUERY = Query(AnswerFormat.default, alias="format",
                     description="default: {label, score}; modelscope: {scores, labels} like ModelScope's pipeline")


def read_page() -> str:
    return resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")


class ServeState:
    """Everything one app instance holds: the model, the cache, the batcher and the warm-up status."""

    def __init__(self, engine: Engine, settings: ServeSettings):
        self.engine = engine
        self.settings = settings
        self.cache = PredictionCache(settings.cache_size)
        self.batcher = self.new_batcher()
        self.status = "starting"  # -> "ready" after the warm-up answered, or "failed"
        self.warmup_error: Optional[str] = None
        self.warmup_seconds: Optional[float] = None
        self.started_at = time.time()
        self.requests = 0
        self.origin = run_of_variant(engine.info.path)  # (set, run id) as loaded, before any republish

    def new_batcher(self) -> MicroBatcher:
        return MicroBatcher(self.engine.predict, self.settings.max_micro_batch, self.settings.batch_wait_ms)

    async def warm_up(self) -> None:
        try:
            self.warmup_seconds = await self.batcher.call(self.engine.warm_up)
        except Exception as exc:  # noqa: BLE001 - any failure of the model's first call: reported by /ready
            self.status, self.warmup_error = "failed", f"{type(exc).__name__}: {exc}"
            logger.error("warm-up request failed, the server will report not ready: %s", self.warmup_error)
            return
        self.status = "ready"
        logger.info("ready: warm-up answered in %.0f ms", self.warmup_seconds * 1000)

    async def predict(self, texts: Sequence[str], field: str,
                      answer_format: AnswerFormat = AnswerFormat.default) -> list[dict[str, Any]]:
        """Answers in input order, shaped as ``answer_format`` asks."""
        self.requests += 1
        texts = clip_for_model(self.engine.classifier, texts, self.engine.max_length)
        await self.check_texts(texts, field)
        shape = modelscope_answer if answer_format is AnswerFormat.modelscope else label_score_answer
        names = self.engine.checkpoint_labels
        return [shape(probs, names) for probs in await self.probabilities(texts)]

    async def check_texts(self, texts: Sequence[str], field: str) -> None:
        """422 for a text the model would see as no token at all, and (reject mode) for an overlong one."""
        empty, over = await run_in_threadpool(self.engine.check_texts, texts)
        if empty:
            problems = [{"field": field.format(i=i), "message": NO_TOKEN_MESSAGE} for i in empty]
            detail = "; ".join(f"{p['field']}: {NO_TOKEN_MESSAGE}" for p in problems)
            raise RequestProblem(422, "invalid_request", detail, problems)
        if over:
            limit = self.engine.max_length
            problems = [
                {"field": field.format(i=i), "message": f"text is {n} tokens, over the limit of {limit} (--max-length)"}
                for i, n in over
            ]
            detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise RequestProblem(422, "text_too_long", detail + " (this server rejects overlong texts; "
                                 "shorten them, or start it with --overlong truncate)", problems)

    async def probabilities(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """Label probabilities in input order: the cache, then the micro-batcher for the misses."""
        results: list[Optional[tuple]] = [None] * len(texts)
        pending: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if text in pending:
                pending[text].append(i)
                continue
            hit = self.cache.get(text)
            if hit is not None:
                results[i] = hit
            else:
                pending[text] = [i]
        if pending:
            answers = await asyncio.gather(*(self.batcher.submit(text) for text in pending))
            for (text, indices), answer in zip(pending.items(), answers, strict=True):
                self.cache.put(text, answer)
                for i in indices:
                    results[i] = answer
        return results  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "uptime_s": round(time.time() - self.started_at, 1),
                "cache": self.cache.stats(), "batching": self.batcher.stats()}

    def published_set(self) -> dict[str, Any]:
        """The run this server loaded and where its published set points now: ``moved_on`` is true after a
        republish (restart the server to serve the new run)."""
        if self.origin is None:
            return {"run": None, "published_set": None}
        set_path, run = self.origin
        now = current_run_id(set_path)
        return {"run": run, "published_set": {"path": str(set_path), "current_run": now, "moved_on": now != run}}

    def health(self) -> dict[str, Any]:
        info = self.engine.info
        return {
            "status": self.status,
            "ready": self.status == "ready",
            "artifact": {"name": info.name, "variant": info.variant, "manifest_sha256": info.manifest_sha256,
                         "path": str(info.path), **self.published_set()},
            "model": {
                "labels": self.engine.labels,  # the API's names, id order
                "checkpoint_labels": self.engine.checkpoint_labels,  # config.json id2label: 负面, 正面
                "engine": getattr(self.engine.classifier, "engine", None),
                "max_length": self.engine.max_length,
                "truncation": getattr(self.engine.classifier, "truncation", "head"),
                "overlong": self.engine.overlong,
                "threads": self.settings.threads,
                # False: the variant's answers depend on batch neighbours, so it runs one text per model call.
                "batch_invariant": self.engine.batch_invariant,
                # padded | equal_length (only texts of one exact token length share a call) | single
                "batching": self.engine.batching,
                "texts_per_model_call": INFER_BATCH if self.engine.batch_invariant else 1,
            },
            "cpu": info.cpu,
            "warmup_ms": None if self.warmup_seconds is None else round(self.warmup_seconds * 1000, 1),
            "error": self.warmup_error,
            "cache": self.cache.stats(),
            "version": __version__,
        }


def create_app(artifact_dir: Path, settings: Optional[ServeSettings] = None) -> FastAPI:
    """The API over one variant folder. Raises ArtifactError for a folder that does not verify."""
    settings = settings or ServeSettings()
    engine = load_engine(Path(artifact_dir), settings)
    state = ServeState(engine, settings)
    page = read_page()
    PredictRequest, PredictBatchRequest = build_request_models(settings.max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.batcher._closed:  # a second start of the same app (e.g. a new TestClient)
            state.batcher = state.new_batcher()
        warm_up = asyncio.get_running_loop().create_task(state.warm_up())
        yield
        warm_up.cancel()
        await state.batcher.close()
        logger.info("shut down cleanly")

    # docs_url/redoc_url: Swagger UI and ReDoc load scripts from a CDN; /openapi.json is the description.
    app = FastAPI(title="structbert-lite", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Chinese sentiment (StructBERT) over an ONNX or OpenVINO artifact: tokenizers, no torch.")
    app.state.serve = state
    install_error_handlers(app, settings.max_batch)

    @app.post("/predict", response_model=Union[Prediction, ModelScopePrediction], responses=ERROR_RESPONSES,
              summary="Classify one text", description=PREDICT_DOC)
    async def predict(request: PredictRequest, answer_format: AnswerFormat = FORMAT_QUERY):
        return (await state.predict([request.text], "text", answer_format))[0]

    @app.post("/predict_batch", response_model=list[Union[Prediction, ModelScopePrediction]],
              responses=ERROR_RESPONSES, summary="Classify several texts; the answers are in input order",
              description=PREDICT_DOC + " Each answer equals the /predict answer for the same text.")
    async def predict_batch(request: PredictBatchRequest, answer_format: AnswerFormat = FORMAT_QUERY):
        return await state.predict(request.texts, "texts[{i}]", answer_format)

    @app.get("/health", summary="Ready once the model answered its warm-up request",
             responses={503: {"description": "starting up (warm-up not answered yet) or warm-up failed"}})
    async def health():
        body = state.health()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/stats", summary="Cache hit counts and micro-batching figures")
    async def stats():
        return state.stats()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    # Outermost first: the access log sees the 4xx answers the body guard gives.
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes, read_timeout_s=settings.read_timeout_s,
                       json_paths=frozenset({"/predict", "/predict_batch"}),
                       max_inflight_body_bytes=settings.max_inflight_body_bytes)
    app.add_middleware(AccessLog)
    return app
