"""fp32-optimized → int8-dynamic: onnxruntime dynamic quantization of the fused graph, structure-checked.

The fused graph quantizes to ``QAttention`` (one per layer) + ``MatMulInteger``/``DynamicQuantizeMatMul`` for
the feed-forward and output projections, and ``QEmbedLayerNormalization`` for the embedding tables (in
StructBERT-base the 21128 × 768 word table is a quarter of the FP32 file: left FP32, int8 is 37% of FP32's
size; quantized, 25%). Quantizing the *fused* graph matters: optimum's stock unfused
``avx2`` preset was 1.7x slower at batch 1 × 32 tokens here (DESIGN.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from structbert_lite.artifact import Artifact
from structbert_lite.errors import GraphStructureError
from structbert_lite.quantize.cpu_presets import QuantPreset, choose_preset
from structbert_lite.quantize.optimize_graph import copy_companions, load_onnx, model_dims, op_counts

logger = logging.getLogger(__name__)

QUANTIZED_MATMUL_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def resolve_settings(qcfg, preset: QuantPreset) -> dict:
    """The effective quantize_dynamic settings: explicit config values win over the preset."""
    return {
        "preset": preset.name,
        "isa": preset.isa,
        "required_cpu_flags": list(preset.required_cpu_flags),
        "weight_type": qcfg.weight_type or preset.weight_type,
        "reduce_range": preset.reduce_range if qcfg.reduce_range is None else qcfg.reduce_range,
        "per_channel": qcfg.per_channel,
        "symmetric_weights": qcfg.symmetric_weights,
        "op_types": list(qcfg.op_types),
    }


def quantize_graph(model_path: Path, out_path: Path, settings: dict, nodes_to_exclude: Sequence[str] = ()) -> None:
    """One call of `onnxruntime.quantization.quantize_dynamic` with our settings."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    load_onnx(model_path)  # a clear error for a corrupt input
    quantize_dynamic(
        str(model_path),
        str(out_path),
        op_types_to_quantize=settings["op_types"],
        per_channel=settings["per_channel"],
        reduce_range=settings["reduce_range"],
        weight_type=QuantType.QInt8 if settings["weight_type"] == "int8" else QuantType.QUInt8,
        nodes_to_exclude=list(nodes_to_exclude),
        extra_options={
            # The fused contrib ops (Attention, SkipLayerNormalization) have no shape inference in onnx;
            # without a default tensor type quantize_dynamic fails on them (DESIGN.md).
            "DefaultTensorType": onnx.TensorProto.FLOAT,
            "WeightSymmetric": settings["symmetric_weights"],
            "MatMulConstBOnly": True,
        },
    )


def check_quantized(counts: dict[str, int], num_layers: int, settings: dict, excluded: Sequence[str]) -> dict:
    """Every layer's attention became QAttention (unless excluded) and some MatMuls became integer ops."""
    found = {
        "QAttention": counts.get("QAttention", 0),
        "quantized_matmul": sum(counts.get(op, 0) for op in QUANTIZED_MATMUL_OPS),
        "Attention (fp32)": counts.get("Attention", 0),
        "QEmbedLayerNormalization": counts.get("QEmbedLayerNormalization", 0),
    }
    problems = []
    excluded_attention = sum(1 for n in excluded if n.startswith("Attention"))
    if "Attention" in settings["op_types"] and found["QAttention"] != num_layers - excluded_attention:
        problems.append(f"QAttention: found {found['QAttention']}, expected {num_layers - excluded_attention}")
    if "MatMul" in settings["op_types"] and found["quantized_matmul"] == 0:
        problems.append("no MatMul was quantized (MatMulInteger/DynamicQuantizeMatMul: 0)")
    excluded_embedding = any(n.startswith("EmbedLayerNormalization") for n in excluded)
    if "EmbedLayerNormalization" in settings["op_types"] and not excluded_embedding and found["QEmbedLayerNormalization"] != 1:
        problems.append(f"QEmbedLayerNormalization: found {found['QEmbedLayerNormalization']}, expected 1")
    if problems:
        raise GraphStructureError(f"dynamic int8 did not quantize the graph as expected: {'; '.join(problems)}")
    logger.info(
        "✓ int8 structure: %d QAttention, %d quantized MatMul, %d QEmbedLayerNormalization",
        found["QAttention"], found["quantized_matmul"], found["QEmbedLayerNormalization"],
    )
    return found


def run(artifact: Artifact, cfg, out_dir: Path, eval_texts=None, eval_labels=None, preset: QuantPreset | None = None) -> Artifact:
    """Quantize an fp32-optimized folder into ``out_dir``; with eval data, apply the accuracy-aware fallback."""
    from structbert_lite.quantize import fallback

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qcfg = cfg.quantize
    preset = preset or choose_preset(qcfg.preset)
    settings = resolve_settings(qcfg, preset)
    num_layers, _, _ = model_dims(artifact.path)
    out_path = out_dir / "model.onnx"

    quantize_graph(artifact.model_path, out_path, settings, qcfg.nodes_to_exclude)
    search = None
    excluded = list(qcfg.nodes_to_exclude)
    if eval_texts is not None and eval_labels is not None and qcfg.fallback.enabled:
        copy_companions(artifact.path, out_dir)  # the fallback scores the folder
        search = fallback.search(artifact, out_dir, cfg, settings, eval_texts, eval_labels)
        excluded = search["excluded_nodes"]
    counts = op_counts(load_onnx(out_path))
    structure = check_quantized(counts, num_layers, settings, excluded)
    copy_companions(artifact.path, out_dir)
    meta = {
        **{k: v for k, v in artifact.meta.items() if k not in ("parity", "variant", "fusions", "op_counts")},
        "variant": "int8-dynamic",
        "quantization": {**settings, "nodes_to_exclude": excluded, "tool": "onnxruntime.quantization.quantize_dynamic"},
        "fallback": search,
        "op_counts": counts,
        "structure": structure,
    }
    return Artifact(out_dir, "int8-dynamic", meta)
