"""The machine's FP32 and int8 GEMM ceilings, measured through onnxruntime in the same run.

Two one-node micro-graphs built with `onnx.helper`, shaped like a BERT feed-forward layer (weights are
initializers, activations are inputs, as in the exported classifier):

    A float32 (M, K) ──► MatMul(B float32 (K, N))                     ──► Y float32 (M, N)
    A uint8   (M, K) ──► MatMulInteger(B int8 (K, N), a_zero_point)   ──► Y int32   (M, N)

u8 × s8 is the layout dynamic int8 uses on x86 (and the one AVX-512 VNNI / AVX-VNNI accelerate). The ceiling
is the best of ``repeats`` runs after a warm-up: what the GEMM kernels reach here with this thread budget.
"""

from __future__ import annotations

import time

import numpy as np


def gemm_model(kind: str, m: int, k: int, n: int):
    """A single MatMul (``kind="fp32"``) or MatMulInteger (``kind="int8"``) model, opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        b = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")
        nodes, inits = [helper.make_node("MatMul", ["A", "B"], ["Y"])], [b]
    elif kind == "int8":
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
        b = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B")
        zp = numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zero_point")
        nodes, inits = [helper.make_node("MatMulInteger", ["A", "B", "a_zero_point"], ["Y"])], [b, zp]
    else:
        raise ValueError(f"unknown GEMM kind {kind!r}; expected 'fp32' or 'int8'")
    graph = helper.make_graph(nodes, f"gemm_{kind}", [a], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def measure_gemm(kind: str, shape: tuple[int, int, int], threads: int, repeats: int) -> dict:
    import onnxruntime as ort

    m, k, n = shape
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(gemm_model(kind, m, k, n).SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(np.float32) if kind == "fp32" else rng.integers(0, 256, (m, k), dtype=np.uint8)
    session.run(None, {"A": a})  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {"A": a})
        times.append(time.perf_counter() - t0)
    flops = 2.0 * m * k * n
    return {
        "op": "MatMul" if kind == "fp32" else "MatMulInteger (u8 x s8)",
        "shape_mkn": [m, k, n],
        "gflops_best": flops / min(times) / 1e9,
        "gflops_median": flops / float(np.median(times)) / 1e9,
        "ms": [t * 1000 for t in times],
    }


def measure_ceilings(shape: tuple[int, int, int], threads: int, repeats: int) -> dict:
    return {kind: measure_gemm(kind, tuple(shape), threads, repeats) for kind in ("fp32", "int8")}
