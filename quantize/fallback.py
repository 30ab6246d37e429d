"""Accuracy-aware fallback: keep the most sensitive layers in FP32 until int8 meets the drift bound.

A simple, explainable search (in the spirit of Neural Compressor's accuracy-aware tuning and Olive's goals):

1. Score the fully quantized graph on ``calibration_rows`` eval texts against the FP32 graph: accuracy
   drop (points), label agreement. If both meet ``quantize.fallback`` bounds, stop.
2. Rank the encoder layers by sensitivity: quantize *only* that layer's nodes, everything else FP32, and
   measure the mean absolute logit difference against FP32.
3. Try k = 1, 2, … ``max_tries``: keep the k most sensitive layers in FP32, re-quantize, re-score. Stop at
   the first try that passes; otherwise keep the best try (the gate will then refuse it, with the record).

Every try — what was excluded, why, and its scores — is returned for the manifest and report.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from pydantic import Field

from structbert_lite.artifact import copy_companions
from structbert_lite.config import Bool, Int
from structbert_lite.quantize.onnx_graph import load_onnx
from structbert_lite.steps import StepOptions

logger = logging.getLogger(__name__)

_HEAD = re.compile(r"pooler|classifier|logits")


class FallbackOptions(StepOptions):
    enabled: Bool = Field(True, description="keep sensitive layers in FP32 when int8 misses the bounds")
    max_accuracy_drop: float = Field(0.5, ge=0, description="accuracy drop (points) that triggers the fallback")
    min_agreement: float = Field(0.99, ge=0, le=1,
                                 description="label agreement with FP32 below which fallback triggers")
    max_tries: Int = Field(4, ge=1, le=20, description="re-quantization attempts before giving up")
    calibration_rows: Int = Field(512, ge=8, description="eval rows used to rank layer sensitivity and check tries")


def layer_groups(model_path: Path, op_types) -> dict[str, list[str]]:
    """Quantizable node names grouped by encoder layer, from graph order.

    Fused node names carry no layer index, so we walk the topologically sorted graph: each ``Attention``
    starts a new layer, and the MatMuls after it (output projection, FFN) belong to that layer.
    """
    groups: dict[str, list[str]] = {}
    layer = -1
    for node in load_onnx(model_path).graph.node:
        if node.op_type == "Attention":
            layer += 1
        if node.op_type in op_types:
            if _HEAD.search(node.name):  # pooler + classifier: exported names keep their module path
                group = "head"
            else:
                group = "embeddings" if layer < 0 else f"layer.{layer}"
            groups.setdefault(group, []).append(node.name)
    return groups


def _score(folder: Path, texts, labels, reference: np.ndarray, ref_accuracy: float, max_length: int,
           threads: int) -> dict:
    from structbert_lite.runtime import OnnxClassifier

    # batch_invariant=False: scored one text at a time, as the runtime serves dynamic int8
    logits = OnnxClassifier(folder, max_length=max_length, threads=threads, batch_invariant=False).logits(texts)
    accuracy = float(np.mean(logits.argmax(-1) == labels))
    return {
        "accuracy": accuracy,
        "accuracy_drop_points": 100.0 * (ref_accuracy - accuracy),
        "agreement": float(np.mean(logits.argmax(-1) == reference.argmax(-1))),
        "max_abs_logit_diff": float(np.max(np.abs(logits - reference))),
        "mean_abs_logit_diff": float(np.mean(np.abs(logits - reference))),
    }


def _passes(score: dict, fcfg) -> bool:
    return score["accuracy_drop_points"] <= fcfg.max_accuracy_drop and score["agreement"] >= fcfg.min_agreement


Requantize = Callable[[Path, Path, Sequence[str]], None]  # (fp32 model, out model, nodes kept FP32)


def search(
    parent_dir: Path,
    int8_dir: Path,
    fcfg: FallbackOptions,
    op_types: Sequence[str],
    base_excluded: Sequence[str],
    requantize: Requantize,
    texts: Sequence[str],
    labels: Optional[np.ndarray],
    threads: int,
    max_length: int,
) -> dict:
    """Run the fallback for the graph already quantized in ``int8_dir``; rewrite it if a try is needed.

    ``labels`` are the model's label ids of ``texts`` (None: the FP32 parent's own predictions stand in,
    so the accuracy drop equals the disagreement). Scratch files live in ``int8_dir/.fallback`` (removed).
    """
    from structbert_lite.runtime import OnnxClassifier

    parent_dir, int8_dir = Path(parent_dir), Path(int8_dir)
    texts = list(texts)[: fcfg.calibration_rows]
    reference = OnnxClassifier(parent_dir, max_length=max_length, threads=threads).logits(texts)
    labels = reference.argmax(-1) if labels is None else np.asarray(labels)[: fcfg.calibration_rows]
    ref_accuracy = float(np.mean(reference.argmax(-1) == labels))
    base_excluded = list(base_excluded)

    def score(folder):
        return _score(folder, texts, labels, reference, ref_accuracy, max_length, threads)

    first = score(int8_dir)
    record = {
        "rows": len(texts),
        "bounds": {"max_accuracy_drop": fcfg.max_accuracy_drop, "min_agreement": fcfg.min_agreement},
        "fp32_accuracy": ref_accuracy,
        "tries": [{"excluded_layers": [], "reason": "full quantization", **first}],
        "triggered": not _passes(first, fcfg),
        "passed": _passes(first, fcfg),
        "excluded_nodes": base_excluded,
        "sensitivity": {},
    }
    logger.info("int8 full quantization: drop %.2f pts, agreement %.4f",
                first["accuracy_drop_points"], first["agreement"])
    if record["passed"]:
        return record

    groups = layer_groups(parent_dir / "model.onnx", op_types)
    work = int8_dir / ".fallback"
    work.mkdir(exist_ok=True)
    try:
        copy_companions(parent_dir, work)
        ranked = rank_sensitivity(parent_dir, work, groups, base_excluded, requantize, score, record)
        try_keeping_layers_fp32(parent_dir, int8_dir, work, groups, ranked, base_excluded, requantize, score, fcfg,
                                record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record


def rank_sensitivity(parent_dir: Path, work: Path, groups: dict, base_excluded: list, requantize: Requantize, score,
                     record: dict) -> list[str]:
    """Layer groups, most sensitive first: each quantized alone, ranked by the mean |Δlogit| it alone costs."""
    for name in groups:
        others = [n for other, ns in groups.items() if other != name for n in ns]
        requantize(parent_dir / "model.onnx", work / "model.onnx", base_excluded + others)
        record["sensitivity"][name] = score(work)["mean_abs_logit_diff"]
    logger.info("layer sensitivity (mean |Δlogit| when quantized alone): %s", record["sensitivity"])
    return sorted(record["sensitivity"], key=record["sensitivity"].get, reverse=True)


def try_keeping_layers_fp32(parent_dir: Path, int8_dir: Path, work: Path, groups: dict, ranked: list[str],
                            base_excluded: list, requantize: Requantize, score, fcfg: FallbackOptions,
                            record: dict) -> None:
    """Keep the k most sensitive groups FP32, k = 1, 2, ...: the first try within the bounds (else the one with the
    best agreement) replaces ``int8_dir/model.onnx``; every try is recorded."""
    best = record["tries"][0]
    for k in range(1, min(fcfg.max_tries, len(ranked)) + 1):
        keep_fp32 = ranked[:k]
        excluded = base_excluded + [n for g in keep_fp32 for n in groups[g]]
        requantize(parent_dir / "model.onnx", work / "model.onnx", excluded)
        result = score(work)
        reason = f"the {k} most sensitive layer(s) kept in FP32"
        record["tries"].append({"excluded_layers": keep_fp32, "reason": reason, **result})
        logger.info("fallback try %d (FP32: %s): drop %.2f pts, agreement %.4f", k, keep_fp32,
                    result["accuracy_drop_points"], result["agreement"])
        if _passes(result, fcfg) or result["agreement"] > best["agreement"]:
            best = result
            shutil.copyfile(work / "model.onnx", Path(int8_dir) / "model.onnx")
            record["excluded_nodes"] = excluded
        if _passes(result, fcfg):
            record["passed"] = True
            return
    logger.warning("int8 fallback ran out of tries (%d) without meeting the bounds", fcfg.max_tries)
