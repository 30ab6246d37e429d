"""The machine's FP32 and int8 GEMM ceilings, measured through onnxruntime in the same run.

Two one-node micro-graphs built with `onnx.helper`, shaped like a BERT feed-forward layer (weights are
initializers, activations are inputs, as in the exported classifier):

    A float32 (M, K) ──► MatMul(B float32 (K, N))                     ──► Y float32 (M, N)
    A uint8   (M, K) ──► MatMulInteger(B int8 (K, N), a_zero_point)   ──► Y int32   (M, N)

u8 × s8 is the layout dynamic int8 uses on x86 (and the one AVX-512 VNNI / AVX-VNNI accelerate). The ceiling
is the best of ``repeats`` runs after a warm-up: what the GEMM kernels reach here with this thread budget.

The same GEMM through OpenVINO's CPU plugin (oneDNN), which our OpenVINO variants and the peers run on:

    openvino-fp32   MatMul(A f32, B f32 constant), INFERENCE_PRECISION_HINT=f32
    openvino-bf16   the same graph at INFERENCE_PRECISION_HINT=bf16 (only on CPUs with avx512_bf16 / AMX-BF16)
    openvino-int8   FakeQuantize(A, u8 levels) → MatMul ← FakeQuantize(B, i8 levels): the pattern NNCF writes,
                    which the plugin runs as an int8 GEMM (VNNI / AMX-INT8)

A precision's ceiling (`ceiling_for`) is the best of its kernels: a contender is measured against the fastest
GEMM this machine ran at its precision, whichever runtime reached it.
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
    model = gemm_model(kind, m, k, n).SerializeToString()
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(np.float32) if kind == "fp32" else rng.integers(0, 256, (m, k), np.uint8)
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


PRECISION_OF = {"fp32": "fp32", "int8": "int8", "openvino-fp32": "fp32", "openvino-bf16": "bf16",
                "openvino-int8": "int8"}


def openvino_gemm_model(kind: str, m: int, k: int, n: int):
    """An OpenVINO MatMul (f32 weights) or its FakeQuantize int8 pattern (``kind="int8"``)."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([m, k], ov.Type.f32, name="A")
    b = ops.constant(rng.standard_normal((k, n)).astype(np.float32))
    left, right = a.output(0), b.output(0)
    if kind == "int8":
        def fake_quantize(node, lo: float, hi: float, levels: int):
            lo_c, hi_c = ops.constant(np.float32(lo)), ops.constant(np.float32(hi))
            return ops.fake_quantize(node, lo_c, hi_c, lo_c, hi_c, levels).output(0)

        left = fake_quantize(left, 0.0, 4.0, 256)  # u8 activations
        right = fake_quantize(right, -4.0, 4.0, 255)  # symmetric i8 weights
    return ov.Model([ops.matmul(left, right, False, False)], [a], f"gemm_openvino_{kind}")


def measure_openvino_gemm(kind: str, shape: tuple[int, int, int], threads: int, repeats: int) -> dict:
    import openvino as ov

    m, k, n = shape
    precision = "bf16" if kind == "bf16" else "f32"
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}
    graph = openvino_gemm_model("int8" if kind == "int8" else "fp32", m, k, n)
    compiled = ov.Core().compile_model(graph, "CPU", config)
    request = compiled.create_infer_request()
    a = np.random.default_rng(1).uniform(0, 4, (m, k)).astype(np.float32)
    request.infer({0: a})  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        request.infer({0: a})
        times.append(time.perf_counter() - t0)
    flops = 2.0 * m * k * n
    ran_as = compiled.get_property("INFERENCE_PRECISION_HINT")
    return {
        "op": f"OpenVINO MatMul ({kind}; inference precision {getattr(ran_as, 'get_type_name', lambda: ran_as)()})",
        "shape_mkn": [m, k, n], "gflops_best": flops / min(times) / 1e9,
        "gflops_median": flops / float(np.median(times)) / 1e9, "ms": [t * 1000 for t in times],
    }


def measure_ceilings(shape: tuple[int, int, int], threads: int, repeats: int) -> dict:
    """{kernel: figures} for onnxruntime's fp32/int8 and OpenVINO's fp32/bf16/int8 (a kernel that cannot run is
    left out: bf16 where the CPU lacks it, OpenVINO where it is not installed)."""
    from structbert_lite.cpu import read_cpu_flags

    out = {kind: measure_gemm(kind, tuple(shape), threads, repeats) for kind in ("fp32", "int8")}
    try:
        import openvino  # noqa: F401
    except ImportError:
        return out
    kinds = ["fp32", "int8"] + (["bf16"] if {"avx512_bf16", "amx_bf16"} & (read_cpu_flags() or set()) else [])
    for kind in kinds:
        out[f"openvino-{kind}"] = measure_openvino_gemm(kind, tuple(shape), threads, repeats)
    return out


def ceiling_for(ceilings: dict, precision: str):
    """(kernel name, best GFLOPS) of the fastest kernel measured at ``precision`` ("fp32" | "bf16" | "int8")."""
    found = [(k, v["gflops_best"]) for k, v in ceilings.items() if PRECISION_OF.get(k) == precision]
    return max(found, key=lambda kv: kv[1]) if found else (None, None)
