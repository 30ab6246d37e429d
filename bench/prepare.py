"""Build, once per run, everything the contenders load: the model, its tokenizer and each contender's files.

Each contender has a `prepare_*` function returning a `ContenderSpec` (plain data a worker process can load
without torch when the contender itself does not need it) or raising; the runner records the error string
and reports the contender as failed. Nothing here times anything.

    work/
      pytorch/            save_pretrained() of the model (+ tokenizer files)  ← pytorch-fp32, pytorch-int8
      tokenizer/          tokenizer.json, vocab.txt, …                          ← every contender
      ours/fp32/          convert.export_onnx.run                               ← openvino-fp32
      ours/fp32-optimized quantize.optimize_graph.run                           ← ours-fp32-optimized
      ours/int8-dynamic   quantize.dynamic_int8.run                             ← ours-int8-dynamic
      optimum/            optimum main_export → ORTQuantizer avx2 (dynamic)     ← optimum-avx2-int8
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

from structbert_lite.bench import workload
from structbert_lite.bench.settings import VOCAB_SIZE, BenchSettings

logger = logging.getLogger(__name__)

ID2LABEL = {0: "负面", 1: "正面"}


@dataclasses.dataclass
class ContenderSpec:
    """What a worker process needs to load one contender (JSON-serialisable)."""

    name: str
    kind: str  # "torch" | "ort" | "openvino"
    model_path: str  # save_pretrained folder (torch) or .onnx file
    tokenizer_dir: str
    options: dict = dataclasses.field(default_factory=dict)  # kind-specific: {"quantize": True}, ...

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Prepared:
    """The shared inputs: the model (in this process), where its files are, and our FP32 export."""

    model: object  # transformers.BertForSequenceClassification, eval mode
    shape: dict  # BertConfig fields that decide the FLOPs
    vocab_size: int
    weights: str  # "random (seed N)" or the checkpoint folder
    torch_dir: Path
    tokenizer_dir: Path
    work: Path
    cfg: object  # structbert_lite.config.PipelineConfig used for our stages
    cfg_origin: str  # the YAML file it came from
    ours: dict = dataclasses.field(default_factory=dict)  # variant -> Artifact (filled as stages run)


def build_random_model(shape: dict, seed: int):
    """StructBERT-base-shaped `BertForSequenceClassification` with seeded random weights (speed only)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=512,
        num_labels=2,
        id2label=dict(ID2LABEL),
        label2id={v: k for k, v in ID2LABEL.items()},
        **shape,
    )
    return BertForSequenceClassification(config).eval()


def prepare_model(settings: BenchSettings, work: Path) -> Prepared:
    """The model under test plus its tokenizer files and a save_pretrained copy for the PyTorch workers."""
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files

    work.mkdir(parents=True, exist_ok=True)
    tokenizer_dir, torch_dir = work / "tokenizer", work / "pytorch"
    if settings.model_dir:
        from structbert_lite.convert.checkpoint import load_classifier

        model = load_classifier(settings.model_dir).model
        vocab_path = Path(settings.model_dir) / "vocab.txt"
        weights = f"checkpoint {Path(settings.model_dir).resolve()}"
    else:
        model = build_random_model(settings.shape, settings.seed)
        vocab_path = work / "vocab.txt"
        vocab_path.write_text("\n".join(workload.build_vocab(VOCAB_SIZE)) + "\n", encoding="utf-8")
        weights = f"random weights (torch.manual_seed({settings.seed}))"
    write_tokenizer_files(vocab_path, tokenizer_dir, settings.max_length)
    if torch_dir.exists():
        shutil.rmtree(torch_dir)
    model.save_pretrained(torch_dir)
    for item in tokenizer_dir.iterdir():
        shutil.copyfile(item, torch_dir / item.name)
    config = model.config
    shape = {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    cfg, cfg_origin = pipeline_config(settings)
    return Prepared(model, shape, config.vocab_size, weights, torch_dir, tokenizer_dir, work, cfg, cfg_origin)


def pipeline_config(settings: BenchSettings):
    """(PipelineConfig, where it came from) for building "ours": the published recipe (export, optimize,
    quantize keys of ``settings.config_path``) with the benchmark's thread budget and truncation length."""
    import yaml

    from structbert_lite.config import parse_config

    data, origin = {}, "schema defaults"
    if settings.config_path:
        path = Path(settings.config_path)
        if not path.is_file():
            raise FileNotFoundError(f"pipeline config {path} does not exist (pass --config FILE)")
        data, origin = yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path)
    data = {key: data[key] for key in ("export", "optimize", "quantize") if key in data}
    data.update(name="bench", model={"max_length": settings.max_length}, validate={"threads": settings.threads})
    return parse_config(data, origin), origin


# ── contenders ────────────────────────────────────────────────────────────────────────────────────────────


def prepare_pytorch_fp32(prep: Prepared) -> ContenderSpec:
    return ContenderSpec("pytorch-fp32", "torch", str(prep.torch_dir), str(prep.tokenizer_dir))


def prepare_pytorch_int8(prep: Prepared) -> ContenderSpec:
    # Quantized in the worker at load time (as a user would); its cold start includes quantize_dynamic.
    return ContenderSpec("pytorch-int8-dynamic", "torch", str(prep.torch_dir), str(prep.tokenizer_dir), {"quantize": True})


def export_ours_fp32(prep: Prepared):
    """Our FP32 export (parity-checked against PyTorch); the input of our stages and of OpenVINO."""
    if "fp32" not in prep.ours:
        from structbert_lite.convert import export_onnx

        loaded = SimpleNamespace(model=prep.model, id2label=dict(ID2LABEL))
        prep.ours["fp32"] = export_onnx.run(loaded, prep.cfg, prep.work / "ours" / "fp32", prep.tokenizer_dir)
    return prep.ours["fp32"]


def optimize_ours(prep: Prepared):
    if "fp32-optimized" not in prep.ours:
        from structbert_lite.quantize import optimize_graph  # lands with issue "optimize"; ImportError = pending

        prep.ours["fp32-optimized"] = optimize_graph.run(export_ours_fp32(prep), prep.cfg, prep.work / "ours" / "fp32-optimized")
    return prep.ours["fp32-optimized"]


def prepare_ours_fp32_optimized(prep: Prepared) -> ContenderSpec:
    artifact = optimize_ours(prep)
    return ContenderSpec("ours-fp32-optimized", "ort", str(artifact.model_path), str(prep.tokenizer_dir))


def prepare_ours_int8(prep: Prepared) -> ContenderSpec:
    from structbert_lite.quantize import dynamic_int8  # ImportError = pending

    artifact = dynamic_int8.run(optimize_ours(prep), prep.cfg, prep.work / "ours" / "int8-dynamic", eval_texts=None)
    prep.ours["int8-dynamic"] = artifact
    return ContenderSpec("ours-int8-dynamic", "ort", str(artifact.model_path), str(prep.tokenizer_dir))


def prepare_ours_int8_host(prep: Prepared) -> ContenderSpec:
    """Our int8 with `quantize.preset: auto`: tuned for the instruction set of the machine running the bench
    (as PyTorch's and OpenVINO's kernels are); the published recipe above stays portable (avx2)."""
    from structbert_lite.quantize import dynamic_int8

    cfg = prep.cfg.model_copy(deep=True)
    cfg.quantize.preset = "auto"
    artifact = dynamic_int8.run(optimize_ours(prep), cfg, prep.work / "ours" / "int8-dynamic-host", eval_texts=None)
    quant = artifact.meta["quantization"]
    return ContenderSpec(
        "ours-int8-host", "ort", str(artifact.model_path), str(prep.tokenizer_dir),
        {"preset": quant["preset"], "reduce_range": quant["reduce_range"]},
    )


def prepare_optimum_avx2(prep: Prepared) -> ContenderSpec:
    """What a user gets from optimum's documented recipe: export, then the stock avx2 dynamic preset."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    export_dir, quant_dir = prep.work / "optimum" / "fp32", prep.work / "optimum" / "avx2-int8"
    main_export(str(prep.torch_dir), output=export_dir, task="text-classification", do_validation=False)
    quantizer = ORTQuantizer.from_pretrained(export_dir)
    qconfig = AutoQuantizationConfig.avx2(is_static=False)
    quantizer.quantize(quantization_config=qconfig, save_dir=quant_dir)
    model_path = next(iter(sorted(quant_dir.glob("*quantized*.onnx"))), None)
    if model_path is None:
        raise FileNotFoundError(f"ORTQuantizer wrote no *quantized*.onnx into {quant_dir}")
    return ContenderSpec("optimum-avx2-int8", "ort", str(model_path), str(prep.tokenizer_dir), {"preset": str(qconfig)})


def prepare_openvino_fp32(prep: Prepared) -> ContenderSpec:
    import openvino  # noqa: F401  (a missing package is this contender's error, reported as such)

    artifact = export_ours_fp32(prep)
    # f32 explicitly: on CPUs with avx512_bf16/AMX OpenVINO's CPU plugin defaults to bf16 inference.
    options = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    return ContenderSpec("openvino-fp32", "openvino", str(artifact.model_path), str(prep.tokenizer_dir), options)


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    group: str  # "baseline" | "peer" | "ours"
    precision: str  # "fp32" | "int8": which GEMM ceiling it is measured against
    description: str
    prepare: Callable[[Prepared], ContenderSpec]


# Registry (ORT MODEL_TYPES style): a dict literal, in report order.
CONTENDERS = {
    c.name: c
    for c in (
        Contender("pytorch-fp32", "baseline", "fp32", "PyTorch FP32 eager, transformers model, dynamic padding, torch.inference_mode()", prepare_pytorch_fp32),
        Contender("pytorch-int8-dynamic", "peer", "int8", "torch.ao.quantization.quantize_dynamic(nn.Linear, qint8)", prepare_pytorch_int8),
        Contender("optimum-avx2-int8", "peer", "int8", "optimum main_export + ORTQuantizer AutoQuantizationConfig.avx2(is_static=False)", prepare_optimum_avx2),
        Contender("openvino-fp32", "peer", "fp32", "OpenVINO CPU on our FP32 ONNX, PERFORMANCE_HINT=LATENCY, INFERENCE_PRECISION_HINT=f32", prepare_openvino_fp32),
        Contender("ours-fp32-optimized", "ours", "fp32", "our fp32-optimized artifact (ORT transformer fusions)", prepare_ours_fp32_optimized),
        Contender("ours-int8-dynamic", "ours", "int8", "our int8-dynamic artifact (dynamic int8 of the fused graph)", prepare_ours_int8),
        Contender("ours-int8-host", "ours", "int8", "our int8 with preset auto: tuned for this machine's instruction set", prepare_ours_int8_host),
    )
}


def write_reviews(texts: list[str], work: Path) -> Path:
    path = work / "reviews.json"
    path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return path


def describe_error(exc: BaseException) -> str:
    """One line for results.json; a missing stage module says the stage is pending, not broken."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.startswith("structbert_lite."):
        return f"pending: {exc.name} is not available yet ({exc})"
    if isinstance(exc, ImportError):
        return f"not installed: {exc} (pip install -e '.[bench]')"
    return f"{type(exc).__name__}: {exc}"


def optional_version(package: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
