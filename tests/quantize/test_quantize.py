"""ORT fusions, dynamic int8, CPU presets and the accuracy-aware fallback, on tiny exported BERTs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from structbert_lite.artifact import Artifact, copy_companions
from structbert_lite.convert.checkpoint import load_classifier, save_checkpoint
from structbert_lite.errors import GraphStructureError, ModelFileError
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.quantize import dynamic_int8, optimize_graph
from structbert_lite.quantize.cpu_presets import choose_preset, detect_isa
from structbert_lite.quantize.fallback import layer_groups
from structbert_lite.runtime import OnnxClassifier
from structbert_lite.steps import step_options
from tests.builders import TINY_VOCAB, center_classifier, run_steps, step_context, tiny_model

TEXTS = [s[i:] + s[:i] for s in PARITY_SENTENCES for i in range(0, 12, 2)]  # 48 varied texts


INT8 = {"preset": "avx2"}


def build_chain(model, work):
    """checkpoint → fp32 → fp32-optimized, as the pipeline does."""
    loaded = load_classifier(save_checkpoint(model, TINY_VOCAB, work / "ckpt"))
    built = run_steps(work, loaded, [("fp32", "export", {}), ("fp32-optimized", "fuse", {})])
    return loaded, built["fp32"], built["fp32-optimized"]


def int8_step(work, loaded, optimized, name, options, texts=None, labels=None):
    ctx = step_context(work, loaded, name=name, texts=texts, labels=labels)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    return dynamic_int8.run(optimized, step_options("ort-dynamic-int8", options, name), ctx)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    work = tmp_path_factory.mktemp("chain")
    return (INT8, work, *build_chain(tiny_model(layers=2, hidden=256, heads=4, seed=1), work))


def test_fusion_counts(chain):
    _, _, _, _, optimized = chain
    fusions = optimized.meta["fuse"]["fusions"]
    assert fusions["Attention"] == {"expected": 2, "found": 2, "ok": True}
    assert fusions["EmbedLayerNormalization"]["found"] == 1
    assert fusions["SkipLayerNormalization"]["ok"] and fusions["Gelu|BiasGelu|FastGelu"]["found"] == 2
    assert all(c["passed"] for c in optimized.meta["fuse"]["parity"]["cases"])


def test_missing_fusion_is_an_error():
    opt = optimize_graph.Options()
    with pytest.raises(GraphStructureError, match="Attention: found 0, expected 12"):
        optimize_graph.check_fusions({"SkipLayerNormalization": 24, "Gelu": 12, "EmbedLayerNormalization": 1}, 12, opt)


def test_int8_structure_size_and_agreement(chain):
    options, work, loaded, fp32, optimized = chain
    int8 = int8_step(work, loaded, optimized, "int8", options)
    counts = int8.meta["int8_structure"]["op_counts"]
    assert counts["QAttention"] == 2 and counts.get("Attention", 0) == 0
    assert counts["QEmbedLayerNormalization"] == 1 and counts.get("EmbedLayerNormalization", 0) == 0
    assert counts["MatMulInteger"] >= 4
    assert int8.meta["quantization"]["reduce_range"] is True and int8.meta["quantization"]["weight_type"] == "int8"
    ratio = fp32.model_path.stat().st_size / int8.model_path.stat().st_size
    assert ratio >= 3.0, f"int8 is only {ratio:.2f}x smaller than fp32"
    ref = OnnxClassifier(fp32.path).logits(TEXTS)
    got = OnnxClassifier(int8.path).logits(TEXTS)
    assert np.max(np.abs(ref - got)) < 0.25
    assert np.mean(ref.argmax(-1) == got.argmax(-1)) >= 0.95


@pytest.mark.parametrize(
    "flags, isa, reduce_range",
    [
        ({"avx2", "fma"}, "avx2", True),
        ({"avx2", "fma", "avx512f", "avx512bw"}, "avx512", True),
        ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, "avx512_vnni", False),
        ({"avx2", "fma", "avx_vnni"}, "avx_vnni", False),
        ({"avx2", "avx512f", "avx512bw", "amx_int8", "avx512_vnni"}, "avx512_vnni", False),
        (set(), "avx2", True),
    ],
)
def test_preset_for_cpu_flags(flags, isa, reduce_range):
    assert detect_isa(flags) == isa
    preset = choose_preset("auto", flags)
    assert preset.reduce_range is reduce_range and preset.weight_type == "int8"


def test_named_presets():
    assert choose_preset("avx512_vnni").reduce_range is False
    with pytest.raises(ValueError, match="unknown quantization preset"):
        choose_preset("sse2")


def test_config_overrides_preset(chain):
    options, *_ = chain
    qcfg = step_options("ort-dynamic-int8", {**options, "reduce_range": False, "weight_type": "uint8"}, "t")
    settings = dynamic_int8.resolve_settings(qcfg, choose_preset("avx2"))
    assert settings["reduce_range"] is False and settings["weight_type"] == "uint8" and settings["preset"] == "avx2"


def sensitive_model(sensitive: bool = True):
    """A tiny BERT whose predictions vary with the text; with ``sensitive``, layer 1 breaks under int8.

    Layer 1's FFN output carries a large share of the signal, and one dead input row of its output
    projection holds a huge outlier weight. In FP32 the outlier meets a zero activation (GELU of a very
    negative pre-activation), so it is inert; int8 weight scales are set by the outlier, so every other
    weight of each column rounds to zero and the layer's FFN vanishes. Keeping that layer in FP32 is the
    fix the fallback must find.
    """
    model = tiny_model(layers=2, hidden=64, heads=2, seed=11)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.normal_(0, 1.0)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.15)
        if sensitive:
            ffn_in = model.bert.encoder.layer[1].intermediate.dense
            ffn_out = model.bert.encoder.layer[1].output.dense
            ffn_out.weight.mul_(4.0)
            ffn_in.weight[0].zero_()
            ffn_in.bias[0] = -30.0  # GELU(-30) == 0: input row 0 of the output projection is dead
            ffn_out.weight[:, 0] = 5000.0
    return center_classifier(model, TEXTS, scale=1.0)


def test_fallback_excludes_the_sensitive_layer_and_passes(tmp_path):
    bounds = {"max_accuracy_drop": 5.0, "min_agreement": 0.95, "max_tries": 2, "calibration_rows": 48}
    loaded, fp32, optimized = build_chain(sensitive_model(), tmp_path)
    labels = OnnxClassifier(fp32.path).logits(TEXTS).argmax(-1)  # FP32 is right by construction
    assert 0.3 < labels.mean() < 0.7

    int8 = int8_step(tmp_path, loaded, optimized, "int8", {"preset": "avx2", "fallback": bounds}, TEXTS, labels)
    record = int8.meta["fallback"]
    assert record["triggered"] and record["passed"], record["tries"]
    first, last = record["tries"][0], record["tries"][-1]
    assert first["agreement"] < 0.95
    assert last["excluded_layers"] == ["layer.1"]
    assert max(record["sensitivity"], key=record["sensitivity"].get) == "layer.1"
    assert set(layer_groups(optimized.model_path, ["MatMul", "Attention"])["layer.1"]) <= set(record["excluded_nodes"])
    assert int8.meta["quantization"]["nodes_to_exclude"] == record["excluded_nodes"]
    got = OnnxClassifier(int8.path).logits(TEXTS).argmax(-1)
    assert np.mean(got == labels) >= 0.95
    assert int8.meta["int8_structure"]["op_counts"]["QAttention"] == 1  # layer 1's attention stayed FP32


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_corrupt_onnx_input_is_a_clear_error(chain, tmp_path, damage):
    options, _, loaded, _, optimized = chain
    bad = tmp_path / "bad"
    bad.mkdir()
    copy_companions(optimized.path, bad)
    data = optimized.model_path.read_bytes()
    if damage == "truncate":
        (bad / "model.onnx").write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        (bad / "model.onnx").write_bytes(b"\x00not an onnx model" * 100)
    with pytest.raises(ModelFileError, match="does not exist" if damage == "missing" else "truncated or corrupt"):
        int8_step(tmp_path, loaded, Artifact(bad, "fp32-optimized"), "out", options)
    ctx = step_context(tmp_path, loaded, name="out2")
    ctx.work_dir.mkdir(parents=True)
    with pytest.raises(ModelFileError):
        optimize_graph.run(Artifact(bad, "fp32"), optimize_graph.Options(), ctx)
