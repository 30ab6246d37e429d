"""What an OpenVINO model really holds: weight MatMuls by encoder layer, which of them are int8, op counts.

NNCF's static int8 leaves this pattern in the IR in front of every quantized projection (OpenVINO's
"FakeQuantize + decompression" form, which the CPU plugin's low-precision transformations turn into u8 x i8
``FullyConnected`` kernels when it compiles)::

    activations ─► FakeQuantize ──────────────────────────┐
                                                           ├─► MatMul
    Constant(i8) ─► Convert(f32) ─► [Subtract] ─► Multiply ┘   (weights: int8 + per-channel scale)

`check_int8_structure` counts that pattern per layer and refuses a model where any layer that was not
deliberately kept in FP32 lost it, where NNCF (like onnxruntime's optimizer) would say nothing.
`runtime_precisions` asks the compiled model what the CPU actually runs: ``FullyConnected`` in u8/i8 or f32.
"""

from __future__ import annotations

import collections
import logging
import re
from typing import Iterable, Optional

from structbert_lite.errors import GraphStructureError

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"layer\.(\d+)[./]")
_HEAD = re.compile(r"pooler|classifier|logits")
# Ops allowed between a weight Constant and its MatMul (decompression, layout).
_WEIGHT_PATH_OPS = {"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}
INT8_TYPES = ("i8", "u8")


def op_counts(model) -> dict[str, int]:
    """Op type → count over an ``ov.Model``."""
    return dict(sorted(collections.Counter(op.get_type_name() for op in model.get_ordered_ops()).items()))


def group_of(name: str) -> str:
    """``layer.N`` for an encoder layer's op (exported names keep the module path), ``head`` or ``other``."""
    match = _LAYER.search(name)
    if match:
        return f"layer.{int(match.group(1))}"
    return "head" if _HEAD.search(name) else "other"


def weight_constant(matmul) -> Optional[object]:
    """The Constant feeding a MatMul's second input through decompression/layout ops, or None (activation x
    activation)."""
    node = matmul.input_value(1).get_node()
    while node.get_type_name() in _WEIGHT_PATH_OPS and node.get_input_size() > 0:
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "Constant" else None


def weight_matmuls(model) -> dict[str, list[dict]]:
    """MatMuls with constant weights, by group: ``{name, int8_weights, quantized_input}`` each."""
    groups: dict[str, list[dict]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        constant = weight_constant(op)
        if constant is None:
            continue
        weight_type = constant.get_output_element_type(0).get_type_name()
        groups.setdefault(group_of(op.get_friendly_name()), []).append(
            {
                "name": op.get_friendly_name(),
                "int8_weights": weight_type in INT8_TYPES,
                "quantized_input": op.input_value(0).get_node().get_type_name() == "FakeQuantize",
            }
        )
    return groups


def layer_names(model) -> dict[str, list[str]]:
    """Weight-MatMul names by group (``layer.0`` …, ``head``): the units an ignored scope keeps in FP32."""
    return {group: [m["name"] for m in ops] for group, ops in weight_matmuls(model).items()}


def unquantized_ops(model) -> list[str]:
    """Names of the weight MatMuls that are not fully int8 in ``model`` (int8 weights and a FakeQuantize input)."""
    return sorted(
        m["name"] for ops in weight_matmuls(model).values() for m in ops
        if not (m["int8_weights"] and m["quantized_input"])
    )


def check_int8_structure(model, num_layers: int, fp32_ops: Iterable[str] = ()) -> dict:
    """Every weight MatMul of every encoder layer, except ``fp32_ops`` (kept FP32 on purpose), is int8.

    int8 = int8 weights and a FakeQuantize on the activation input. Returns the counts for the manifest;
    raises `GraphStructureError` naming the layers that fall short, or when nothing at all is int8.
    """
    fp32_ops = set(fp32_ops)
    groups = weight_matmuls(model)
    per_group = {}
    problems = []
    for group, ops in sorted(groups.items()):
        int8 = [m for m in ops if m["int8_weights"] and m["quantized_input"]]
        kept = [m for m in ops if m["name"] in fp32_ops]
        per_group[group] = {"weight_matmuls": len(ops), "int8": len(int8), "kept_fp32": len(kept)}
        missing = len(ops) - len(kept) - len([m for m in int8 if m["name"] not in fp32_ops])
        if group.startswith("layer.") and missing:
            problems.append(f"{group}: {len(int8)}/{len(ops)} MatMuls int8, {len(kept)} kept FP32 on purpose")
    for layer in (f"layer.{i}" for i in range(num_layers)):
        if layer not in groups:
            problems.append(f"{layer}: no MatMul with constant weights found (are the exported node names kept?)")
    structure = {
        "FakeQuantize": op_counts(model).get("FakeQuantize", 0),
        "int8_weight_matmuls": sum(g["int8"] for g in per_group.values()),
        "weight_matmuls": sum(g["weight_matmuls"] for g in per_group.values()),
        "kept_fp32": sorted(fp32_ops),
        "layers": num_layers,
        "per_group": per_group,
    }
    if structure["int8_weight_matmuls"] == 0:
        problems.insert(0, "no MatMul is int8 at all (the model was not quantized)")
    if problems:
        raise GraphStructureError(
            "the OpenVINO model is not int8 where it must be (an int8 MatMul has int8 weights and a FakeQuantize "
            f"on its input): {'; '.join(problems)}"
        )
    logger.info(
        "✓ OpenVINO int8 structure: %d/%d weight MatMuls int8, %d FakeQuantize, %d kept FP32 on purpose",
        structure["int8_weight_matmuls"], structure["weight_matmuls"], structure["FakeQuantize"], len(fp32_ops),
    )
    return structure


def weight_bytes(model) -> dict[str, int]:
    """Bytes of constants by element type (``i8``: quantized weights and word embeddings; ``f32``: the rest)."""
    sizes: collections.Counter = collections.Counter()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            sizes[op.get_output_element_type(0).get_type_name()] += int(op.get_byte_size())
    return dict(sorted(sizes.items()))


def runtime_precisions(compiled) -> dict[str, int]:
    """``"<layer type>:<precision>"`` → count in the compiled (CPU-executed) graph, e.g. ``FullyConnected:u8``."""
    counts: collections.Counter = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer_type = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if layer_type in ("FullyConnected", "MatMul"):
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            counts[f"{layer_type}:{precision}"] += 1
    return dict(sorted(counts.items()))


def int8_kernels(precisions: dict[str, int]) -> int:
    """How many FullyConnected/MatMul kernels the CPU runs in u8/i8."""
    return sum(n for key, n in precisions.items() if key.rsplit(":", 1)[-1] in INT8_TYPES)
