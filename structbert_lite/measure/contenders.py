"""What can be measured, and how a fresh worker process loads it (importing only that contender's runtime).

A `ContenderSpec` is plain data (JSON through the worker's job file). Kinds (``path``; loads with; options):

- ``torch``: a checkpoint folder; ``loader`` ("module:function", returns a module or an object with ``.model``);
  ``quantize: "dynamic-int8"`` (torch.ao, nn.Linear, qint8, at load).
- ``onnxruntime``: a ``.onnx`` file, or a folder with ``model.onnx``; `runtime.create_session`.
- ``openvino``: an IR ``.xml``, a ``.onnx``, or a folder with ``openvino_model.xml``; ``openvino.Core().compile_model``
  on CPU; ``precision``: None (the CPU default: bf16 where the CPU has it) or "f32"/"bf16"; ``performance_hint``.
- ``variant``: a variant folder; `runtime.open_variant` (the engine its manifest names); ``batch_invariant``:
  overrides the manifest's (a staged folder has none yet).

Every kind answers through ``predict(feed) -> logits (batch, labels)`` and uses the tokenizer files of
``tokenizer_dir`` (default: the folder of ``path``), so all contenders see byte-identical ids.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

KINDS = ("torch", "onnxruntime", "openvino", "variant")
DEFAULT_TORCH_LOADER = "structbert_lite.convert.checkpoint:load_classifier"
TORCH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclasses.dataclass
class ContenderSpec:
    """One contender: a name, what to load and how (JSON-serialisable)."""

    name: str
    kind: str  # one of KINDS
    path: str
    tokenizer_dir: Optional[str] = None  # None: the folder of `path`
    loader: Optional[str] = None  # torch only: "module:function" (None: DEFAULT_TORCH_LOADER)
    options: dict = dataclasses.field(default_factory=dict)  # kind-specific, see the module docstring

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"contender {self.name!r}: unknown kind {self.kind!r}; expected one of {KINDS}")
        self.path, self.tokenizer_dir = str(self.path), None if self.tokenizer_dir is None else str(self.tokenizer_dir)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def tokenizer_folder(self) -> Path:
        if self.tokenizer_dir:
            return Path(self.tokenizer_dir)
        path = Path(self.path)
        return path if path.is_dir() else path.parent


@dataclasses.dataclass
class Loaded:
    """A contender ready to time."""

    predict: Callable[[dict[str, np.ndarray]], np.ndarray]  # feed (batch, seq) -> logits (batch, labels)
    tokenizer: Any  # tokenizers.Tokenizer (truncation at max_length, dynamic padding)
    batch_invariant: bool = True  # False: served one text at a time (dynamic int8), throughput follows suit
    details: dict = dataclasses.field(default_factory=dict)  # what was actually used (e.g. OpenVINO's precision)


def resolve_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:attr.attr"`` -> the object
    (e.g. ``transformers:BertForSequenceClassification.from_pretrained``)."""
    module_name, _, attr_path = str(spec).partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"{spec!r} must look like 'package.module:function'")
    target: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        target = getattr(target, part)
    return target


def _load_torch(spec: ContenderSpec, threads: int) -> tuple[Callable, dict]:
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    loaded = resolve_callable(spec.loader or DEFAULT_TORCH_LOADER)(spec.path)
    model = getattr(loaded, "model", loaded).eval()
    details = {"quantize": spec.options.get("quantize")}
    if spec.options.get("quantize") == "dynamic-int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif spec.options.get("quantize"):
        raise ValueError(f"contender {spec.name}: unknown torch quantize option {spec.options['quantize']!r}")

    def predict(feed):
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items() if k in TORCH_INPUTS}
        with torch.inference_mode():
            return model(**inputs).logits.float().numpy()

    return predict, details


def _load_onnxruntime(spec: ContenderSpec, threads: int) -> tuple[Callable, dict]:
    from structbert_lite.runtime import create_session

    path = Path(spec.path)
    session = create_session(path / "model.onnx" if path.is_dir() else path, threads)
    names = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name

    def predict(feed):
        return session.run([output], {k: v for k, v in feed.items() if k in names})[0]

    return predict, {}


def _property_text(value) -> str:
    """An OpenVINO property as plain text: element types by their short name ("f32", "bf16")."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _load_openvino(spec: ContenderSpec, threads: int) -> tuple[Callable, dict]:
    import openvino as ov

    path = Path(spec.path)
    model_path = path / "openvino_model.xml" if path.is_dir() else path
    config = {"PERFORMANCE_HINT": spec.options.get("performance_hint", "LATENCY"), "INFERENCE_NUM_THREADS": threads}
    if spec.options.get("precision"):
        config["INFERENCE_PRECISION_HINT"] = spec.options["precision"]
    compiled = ov.Core().compile_model(str(model_path), "CPU", config)
    request = compiled.create_infer_request()
    names = {port.get_any_name() for port in compiled.inputs}
    output = compiled.outputs[0]
    details = {k: _property_text(compiled.get_property(k))
               for k in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")}

    def predict(feed):
        return np.asarray(request.infer({k: v for k, v in feed.items() if k in names})[output])

    return predict, details


def _load_variant(spec: ContenderSpec, threads: int, max_length: int) -> Loaded:
    from structbert_lite.runtime import open_variant

    classifier = open_variant(Path(spec.path), max_length=max_length, threads=threads)
    invariant = spec.options.get("batch_invariant", classifier.batch_invariant)  # measured before publishing
    details = {"engine": getattr(classifier, "engine", None), "batch_invariant": invariant}
    return Loaded(classifier.logits_for_encoding, classifier.tokenizer, bool(invariant), details)


LOADERS = {"torch": _load_torch, "onnxruntime": _load_onnxruntime, "openvino": _load_openvino}


def load_contender(spec: ContenderSpec, threads: int, max_length: int) -> Loaded:
    """Load ``spec`` with ``threads`` intra-op threads (inter-op 1) and its tokenizer at ``max_length``."""
    from structbert_lite.runtime import load_tokenizer

    if spec.kind == "variant":
        return _load_variant(spec, threads, max_length)
    predict, details = LOADERS[spec.kind](spec, threads)
    return Loaded(predict, load_tokenizer(spec.tokenizer_folder(), max_length), True, details)
