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
import tempfile
from pathlib import Path

import numpy as np

from structbert_lite.quantize.optimize_graph import copy_companions, load_onnx

logger = logging.getLogger(__name__)

_HEAD = re.compile(r"pooler|classifier|logits")


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


def _score(folder: Path, texts, labels, reference: np.ndarray, ref_accuracy: float, max_length: int, threads: int) -> dict:
    from structbert_lite.runtime import OnnxClassifier

    logits = OnnxClassifier(folder, max_length=max_length, threads=threads).logits(texts)
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


def search(fp32_artifact, int8_dir: Path, cfg, settings: dict, texts, labels) -> dict:
    """Run the fallback for the graph already quantized in ``int8_dir``; rewrite it if a try is needed."""
    from structbert_lite.quantize.dynamic_int8 import quantize_graph
    from structbert_lite.runtime import OnnxClassifier

    fcfg, threads, max_length = cfg.quantize.fallback, cfg.validate.threads, cfg.model.max_length
    texts = list(texts)[: fcfg.calibration_rows]
    labels = np.asarray(list(labels)[: fcfg.calibration_rows])
    reference = OnnxClassifier(fp32_artifact.path, max_length=max_length, threads=threads).logits(texts)
    ref_accuracy = float(np.mean(reference.argmax(-1) == labels))
    base_excluded = list(cfg.quantize.nodes_to_exclude)

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
    logger.info("int8 full quantization: drop %.2f pts, agreement %.4f", first["accuracy_drop_points"], first["agreement"])
    if record["passed"]:
        return record

    groups = layer_groups(fp32_artifact.model_path, settings["op_types"])
    work = Path(tempfile.mkdtemp(prefix="structbert-lite-fallback-"))
    try:
        copy_companions(fp32_artifact.path, work)
        for name, nodes in groups.items():  # quantize one group alone: how much does it alone cost?
            others = [n for other, ns in groups.items() if other != name for n in ns]
            quantize_graph(fp32_artifact.model_path, work / "model.onnx", settings, base_excluded + others)
            record["sensitivity"][name] = score(work)["mean_abs_logit_diff"]
        ranked = sorted(record["sensitivity"], key=record["sensitivity"].get, reverse=True)
        logger.info("layer sensitivity (mean |Δlogit| when quantized alone): %s", record["sensitivity"])
        best = first
        for k in range(1, min(fcfg.max_tries, len(ranked)) + 1):
            keep_fp32 = ranked[:k]
            excluded = base_excluded + [n for g in keep_fp32 for n in groups[g]]
            quantize_graph(fp32_artifact.model_path, work / "model.onnx", settings, excluded)
            result = score(work)
            record["tries"].append(
                {"excluded_layers": keep_fp32, "reason": f"the {k} most sensitive layer(s) kept in FP32", **result}
            )
            logger.info("fallback try %d (FP32: %s): drop %.2f pts, agreement %.4f", k, keep_fp32, result["accuracy_drop_points"], result["agreement"])
            if _passes(result, fcfg) or result["agreement"] > best["agreement"]:
                best = result
                shutil.copyfile(work / "model.onnx", Path(int8_dir) / "model.onnx")
                record["excluded_nodes"] = excluded
            if _passes(result, fcfg):
                record["passed"] = True
                break
        if not record["passed"]:
            logger.warning("int8 fallback ran out of tries (%d) without meeting the bounds", fcfg.max_tries)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record
