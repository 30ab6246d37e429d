"""Torch-free inference over an OpenVINO variant folder: openvino + tokenizers + numpy.

The same interface as `runtime.OnnxClassifier` (``engine``, ``labels``, ``tokenizer``, ``logits_for_encoding``,
``logits``, ``predict``, ``batch_invariant``, ``equal_length_invariant``), the same tokenization
(`runtime.load_tokenizer`) and the same batching (`runtime.predict_logits`), so validate and serve see an
OpenVINO variant exactly as they see an ONNX one. `runtime.open_variant` picks this class from the manifest's
``engine`` (or from an ``openvino_model.xml`` without a ``model.onnx``).

Precision. OpenVINO's CPU plugin runs the parts of a graph that are not int8 (LayerNorm, softmax, attention,
embeddings) at its *default inference precision*, which is bf16 on CPUs with AVX512_BF16 or AMX and f32
elsewhere (`INFERENCE_PRECISION_HINT`). The precision a classifier really runs at is ``inference_precision``;
the step records the one the gate measured (manifest ``openvino.inference_precision``) and may force one
(manifest ``openvino.precision_hint``, e.g. ``f32``), which this class then passes to the compiler. A
machine that would run a folder at another precision than the one gated gets a warning at load.

Shapes. The IR keeps batch and sequence dynamic; the CPU plugin compiles once and prepares kernels per new
input shape on first use, caching them (``CPU_RUNTIME_CACHE_CAPACITY``), so each new (batch, seq) pays a
one-off cost on its first call (measured and stated in the README's OpenVINO section).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from structbert_lite.errors import ArtifactError, ModelFileError
from structbert_lite.runtime import FolderClassifier, load_tokenizer, read_label_names, read_manifest_if_any

logger = logging.getLogger(__name__)

MODEL_XML = "openvino_model.xml"
MODEL_BIN = "openvino_model.bin"
PRECISIONS = ("f32", "bf16", "f16")  # values INFERENCE_PRECISION_HINT takes on CPU


def read_ov_model(core, folder: Path):
    """``core.read_model`` of the folder's IR, with one clear line for a missing, truncated or corrupt file."""
    folder = Path(folder)
    xml, weights = folder / MODEL_XML, folder / MODEL_BIN
    for path in (xml, weights):
        if not path.is_file():
            raise ModelFileError(
                f"OpenVINO model file {path} is missing: the folder is incomplete; copy the whole variant folder "
                "again or re-run the pipeline (`structbert-lite verify` lists what is wrong)"
            )
    try:
        return core.read_model(str(xml), str(weights))
    except RuntimeError as exc:  # what openvino raises, with a multi-line message, for a bad file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"OpenVINO cannot read {xml} ({first}); the IR is truncated or corrupt: re-run the pipeline "
            "(or `structbert-lite verify` the folder)"
        ) from None


def ensure_precision_or_raise(precision: Optional[str]) -> Optional[str]:
    if precision is not None and precision not in PRECISIONS:
        raise ArtifactError(f"OpenVINO inference precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def compile_config(threads: Optional[int], precision: Optional[str], streams: int = 1) -> dict:
    """CPU compile properties: the thread budget and a forced precision if any; one stream, latency first, or
    ``streams`` > 1 streams (throughput: ``threads`` each, ``NUM_STREAMS`` x ``threads`` in all)."""
    config: dict = {"PERFORMANCE_HINT": "LATENCY"}
    if streams > 1:
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": int(streams)}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads) * max(1, int(streams))
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    return config


def compile_ov_model(model, threads: Optional[int] = None, precision: Optional[str] = None, core=None,
                     streams: int = 1):
    """``model`` (an ``ov.Model``) compiled for the CPU with `compile_config`."""
    import openvino as ov

    core = core or ov.Core()
    try:
        return core.compile_model(model, "CPU", compile_config(threads, ensure_precision_or_raise(precision), streams))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "RuntimeError"
        raise ModelFileError(f"OpenVINO cannot compile the model for the CPU ({first})") from None


def run_precision(compiled) -> str:
    """The precision a compiled model runs its non-quantized ops at ("f32", "bf16"...)."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def _manifest_openvino(folder: Path) -> dict:
    section = read_manifest_if_any(folder).get("openvino")
    return section if isinstance(section, dict) else {}


class OpenVinoClassifier(FolderClassifier):
    """Scores texts with a variant folder's ``openvino_model.xml``/``.bin`` on the CPU."""

    engine = "openvino"

    def __init__(
        self,
        folder: Path,
        max_length: int = 128,
        threads: int | None = None,
        batch_invariant: bool = True,
        truncation: str = "head",
        precision: str | None = None,
        model=None,
        equal_length_invariant: bool = False,
        streams: int = 1,
    ):
        """``precision`` forces an inference precision (default: the manifest's ``openvino.precision_hint``, else
        the CPU's default); ``model``, an in-memory ``ov.Model``, is scored instead of the folder's IR (the
        quantize step scores its tries this way; the folder still gives the tokenizer and labels). ``streams`` > 1
        compiles for throughput and runs `logits_for_encodings` on an ``AsyncInferQueue`` of that many requests
        (corpus scoring; ``threads`` is then per stream)."""
        import openvino as ov

        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_invariant = batch_invariant
        self.equal_length_invariant = equal_length_invariant
        self.truncation = truncation
        recorded = _manifest_openvino(self.folder)
        self.precision_hint = ensure_precision_or_raise(precision or recorded.get("precision_hint"))
        core = ov.Core()
        model = read_ov_model(core, self.folder) if model is None else model
        self.streams = max(1, int(streams))
        self.compiled = compile_ov_model(model, threads, self.precision_hint, core, self.streams)
        self.inference_precision = run_precision(self.compiled)
        gated = recorded.get("inference_precision")
        if gated and gated != self.inference_precision:
            logger.warning(
                "%s was gated running at %s but this CPU runs it at %s: its accuracy here was not measured "
                "(publish it with options.precision: %s to pin it)",
                self.folder, gated, self.inference_precision, gated,
            )
        self.tokenizer = load_tokenizer(self.folder, max_length, truncation)
        self.labels = read_label_names(self.folder)
        self._input_names = {name for port in self.compiled.inputs for name in port.get_names()}
        self._output = self._logits_port()
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # an InferRequest is not thread-safe; one call at a time, as serve does

    def _logits_port(self):
        for port in self.compiled.outputs:
            if "logits" in port.get_names():
                return port
        return self.compiled.output(0)

    def logits_for_encodings(self, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Logits of each feed, in order: one call after another, or with ``streams`` > 1 on an
        ``AsyncInferQueue`` of ``streams`` requests (each feed's result is its own call's, as alone)."""
        if self.streams == 1:
            return [self.logits_for_encoding(feed) for feed in feeds]
        import openvino as ov

        results: list = [None] * len(feeds)

        def done(request, index):
            results[index] = np.array(request.get_tensor(self._output).data, dtype=np.float32)  # a copy

        with self._lock:
            queue = ov.AsyncInferQueue(self.compiled, self.streams)
            queue.set_callback(done)
            for index, feed in enumerate(feeds):
                queue.start_async({k: v for k, v in feed.items() if k in self._input_names}, index)
            queue.wait_all()
        return results

    def logits_for_encoding(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in feed.items() if k in self._input_names}
        with self._lock:
            # share_inputs: OpenVINO reads the caller's arrays in place (no copy; they outlive this synchronous
            # call) — on the tiny demo model the copy was ~0.2 of 0.87 ms per call.
            result = self._request.infer(feed, share_inputs=True)
            return np.array(result[self._output], dtype=np.float32)  # (batch, num_labels), a copy
