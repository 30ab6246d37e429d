"""Who runs in `make bench`: the peers (a dict literal, in report order) and ours (the config's variants).

A peer runs on the shapes it lists: every peer on the base shape, the strongest ones on the student shape too.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from structbert_lite.bench import peers
from structbert_lite.bench.prepare import Prepared
from structbert_lite.bench.settings import BenchSettings
from structbert_lite.measure.contenders import ContenderSpec

BASELINE = "pytorch-fp32"
OURS_PREFIX = "ours-"
BOTH = ("base", "student")


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    group: str  # "baseline" | "peer" | "ours"
    precision: str  # "fp32" | "int8": which GEMM ceiling it is measured against
    description: str
    prepare: Callable[[Prepared, BenchSettings], ContenderSpec]
    shapes: tuple = ("base",)


PEERS = {
    c.name: c
    for c in (
        Contender("pytorch-fp32", "baseline", "fp32", "PyTorch FP32 eager, transformers model, torch.inference_mode()",
                  lambda p, s: peers.pytorch_fp32(p), BOTH),
        Contender("pytorch-int8-dynamic", "peer", "int8", "torch.ao.quantization.quantize_dynamic(nn.Linear, qint8)",
                  lambda p, s: peers.pytorch_int8(p), BOTH),
        Contender("optimum-avx2-int8", "peer", "int8",
                  "optimum main_export + ORTQuantizer AutoQuantizationConfig.avx2(is_static=False)",
                  lambda p, s: peers.optimum_avx2(p)),
        Contender("ort-recipe-int8", "peer", "int8",
                  "onnxruntime optimize_model(bert) + quantize_dynamic(QInt8, per_channel, reduce_range)",
                  lambda p, s: peers.ort_recipe_int8(p), BOTH),
        Contender("openvino-default", "peer", "fp32",
                  "OpenVINO CPU on our FP32 ONNX at its default inference precision",
                  lambda p, s: peers.openvino_default(p)),
        Contender("openvino-f32", "peer", "fp32", "OpenVINO CPU on our FP32 ONNX, INFERENCE_PRECISION_HINT=f32",
                  lambda p, s: peers.openvino_f32(p)),
        Contender("openvino-int8-nncf", "peer", "int8",
                  "nncf.quantize(model_type=TRANSFORMER) of our FP32 ONNX, real-review calibration",
                  lambda p, s: peers.openvino_int8_nncf(p, s.calibration_texts), BOTH),
    )
}


def ours(prep: Prepared) -> dict[str, tuple[Contender, ContenderSpec]]:
    """Our published variants of ``prep`` (the config's variants with ``publish: true`` that were built).

    Each is batched for throughput as the product batches it without changing an answer: OpenVINO variants by
    exact token length, unpadded (equal-length rows are invariant); ONNX dynamic int8 one text per call (one
    activation scale per batch); ONNX FP32 in padded buckets. Peers get padded buckets, their best."""
    found = {}
    for variant in prep.cfg.variants:
        artifact = prep.ours.get(variant.name)
        if not variant.publish or artifact is None or artifact.format not in ("onnx", "openvino"):
            continue
        name = OURS_PREFIX + variant.name
        quantized = "int8" in variant.name or variant.step in ("ort-dynamic-int8", "openvino-int8")
        description = f"our {variant.name} artifact (step {variant.step} ← {variant.parent})"
        contender = Contender(name, "ours", "int8" if quantized else "fp32", description, lambda p, s: None, BOTH)
        if artifact.format == "onnx":
            spec = ContenderSpec(name, "onnxruntime", artifact.path, prep.tokenizer_dir,
                                 options={"batching": "one" if quantized else "padded"})
        else:
            source = (artifact.meta.get("openvino") or {}).get("source")
            spec = ContenderSpec(name, "openvino", artifact.path, prep.tokenizer_dir,
                                 options={"precision": None, "batching": "exact-length", "nncf_input": source,
                                          "ir": peers.openvino_ir_facts(artifact.path / "openvino_model.xml")})
        found[name] = (contender, spec)
    return found


def not_built(prep: Prepared) -> dict[str, tuple[Contender, str]]:
    """Our variants whose step failed: reported as failed contenders, never dropped."""
    published = {v.name: v for v in prep.cfg.variants if v.publish}
    return {
        OURS_PREFIX + name: (Contender(OURS_PREFIX + name, "ours", "int8" if "int8" in name else "fp32",
                                       f"our {name} artifact (step {published[name].step})", lambda p, s: None,
                                       BOTH), why)
        for name, why in prep.ours_failures.items() if name in published
    }
