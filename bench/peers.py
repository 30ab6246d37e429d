"""The peers a user would really pick, each made the way that user would make it.

Every ONNX/OpenVINO peer starts from the same FP32 export as ours (`Prepared.fp32_export`), so the only
difference is the recipe. Each function returns a `ContenderSpec` (plain data a fresh worker loads) or
raises; the runner records the error as the contender's result.

| peer | recipe |
| --- | --- |
| pytorch-fp32 | `BertForSequenceClassification.from_pretrained`, eager, `torch.inference_mode()` (the baseline) |
| pytorch-int8-dynamic | `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, qint8)` at load |
| optimum-avx2-int8 | optimum `main_export`, then `ORTQuantizer` with `AutoQuantizationConfig.avx2(is_static=False)` |
| ort-recipe-int8 | `optimizer.optimize_model(model_type="bert")` + `quantize_dynamic(S8, per_channel, reduce_range)` |
| openvino-default | OpenVINO CPU on the FP32 export at its default inference precision (bf16 on CPUs that have it) |
| openvino-f32 | the same with `INFERENCE_PRECISION_HINT=f32` |
| openvino-int8-nncf | `nncf.quantize(read_model(onnx), Dataset(feeds), model_type=TRANSFORMER)`, 64 reviews as served |
"""

from __future__ import annotations

from pathlib import Path

from structbert_lite.bench.prepare import HF_LOADER, Prepared
from structbert_lite.measure.contenders import ContenderSpec


def pytorch_fp32(prep: Prepared) -> ContenderSpec:
    return ContenderSpec("pytorch-fp32", "torch", prep.torch_dir, prep.tokenizer_dir, HF_LOADER)


def pytorch_int8(prep: Prepared) -> ContenderSpec:
    # Quantized in the worker at load time, as a user would; its cold start includes quantize_dynamic.
    return ContenderSpec("pytorch-int8-dynamic", "torch", prep.torch_dir, prep.tokenizer_dir, HF_LOADER,
                         {"quantize": "dynamic-int8"})


def optimum_avx2(prep: Prepared) -> ContenderSpec:
    """What a user gets from optimum's documented recipe: export, then the stock avx2 dynamic preset."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    export_dir, quant_dir = prep.work / "optimum" / "fp32", prep.work / "optimum" / "avx2-int8"
    main_export(str(prep.torch_dir), output=export_dir, task="text-classification", do_validation=False)
    qconfig = AutoQuantizationConfig.avx2(is_static=False)
    ORTQuantizer.from_pretrained(export_dir).quantize(quantization_config=qconfig, save_dir=quant_dir)
    model_path = next(iter(sorted(quant_dir.glob("*quantized*.onnx"))), None)
    if model_path is None:
        raise FileNotFoundError(f"ORTQuantizer wrote no *quantized*.onnx into {quant_dir}")
    return ContenderSpec("optimum-avx2-int8", "onnxruntime", model_path, prep.tokenizer_dir,
                         options={"preset": str(qconfig)})


def ort_recipe_int8(prep: Prepared) -> ContenderSpec:
    """onnxruntime's own tools, as its BERT quantization example uses them."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    out = prep.work / "ort-recipe"
    out.mkdir(parents=True, exist_ok=True)
    fused = optimize_model(str(prep.fp32_export()), model_type="bert", num_heads=prep.shape["num_attention_heads"],
                           hidden_size=prep.shape["hidden_size"])
    fused.save_model_to_file(str(out / "model.fused.onnx"))
    options = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True}
    quantize_dynamic(
        out / "model.fused.onnx", out / "model.int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
        reduce_range=True,
        # Without it ORT's shape inference fails on the fused graph (DESIGN.md); every user of the recipe adds it.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return ContenderSpec("ort-recipe-int8", "onnxruntime", out / "model.int8.onnx", prep.tokenizer_dir, options=options)


def openvino_default(prep: Prepared) -> ContenderSpec:
    import openvino  # noqa: F401  (a missing package is this contender's error, reported as such)

    # No precision hint: the CPU plugin's default (bf16 where the CPU has avx512_bf16/AMX); the worker records it.
    return ContenderSpec("openvino-default", "openvino", prep.fp32_export(), prep.tokenizer_dir,
                         options={"precision": None})


def openvino_f32(prep: Prepared) -> ContenderSpec:
    import openvino  # noqa: F401

    return ContenderSpec("openvino-f32", "openvino", prep.fp32_export(), prep.tokenizer_dir,
                         options={"precision": "f32"})


def openvino_int8_nncf(prep: Prepared, calibration_texts: int) -> ContenderSpec:
    """NNCF post-training int8 of the FP32 export, calibrated on real reviews tokenized as served."""
    import nncf
    import openvino as ov

    from structbert_lite.measure.feeds import calibration_feeds
    from structbert_lite.runtime import load_tokenizer

    model = ov.Core().read_model(str(prep.fp32_export()))
    names = {port.get_any_name() for port in model.inputs}
    tokenizer = load_tokenizer(prep.tokenizer_dir, prep.cfg.model.max_length)
    feeds = [{k: v for k, v in feed.items() if k in names}
             for feed in calibration_feeds(tokenizer, prep.reviews, calibration_texts)]
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds))
    out = prep.work / "openvino-int8-nncf" / "openvino_model.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out))
    options = {"precision": None, "nncf": nncf.__version__, "calibration_feeds": len(feeds),
               "nncf_input": "ov.Core().read_model(fp32 ONNX)", "ir": openvino_ir_facts(out)}
    return ContenderSpec("openvino-int8-nncf", "openvino", out, prep.tokenizer_dir, options=options)


def openvino_ir_facts(xml: Path) -> dict:
    """What an OpenVINO int8 IR holds and what this CPU runs of it, for results.json: ours and the NNCF peer
    side by side (op and FakeQuantize counts, int8 weight MatMuls, FullyConnected kernels by source precision:
    ``u8`` or ``i8`` activations, which NNCF picks per quantizer from the calibration statistics)."""
    import openvino as ov

    from structbert_lite.quantize import openvino_graph

    core = ov.Core()
    model = core.read_model(str(xml))
    counts = openvino_graph.op_counts(model)
    matmuls = [m for ops in openvino_graph.weight_matmuls(model).values() for m in ops]
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1})  # kernel choice only, nothing timed
    return {
        "ops": sum(counts.values()),
        "FakeQuantize": counts.get("FakeQuantize", 0),
        "ScaledDotProductAttention": counts.get("ScaledDotProductAttention", 0),
        "int8_weight_matmuls": sum(m["int8_weights"] and m["quantized_input"] for m in matmuls),
        "weight_matmuls": len(matmuls),
        "runtime_kernels": openvino_graph.runtime_precisions(compiled),
    }
