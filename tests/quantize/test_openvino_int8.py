"""The openvino-int8 step on tiny exported BERTs: structure, accuracy bounds, fallbacks, loading both ways."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from structbert_lite.convert.checkpoint import load_classifier, save_checkpoint
from structbert_lite.errors import ConfigError, GraphStructureError
from structbert_lite.openvino_runtime import MODEL_BIN, MODEL_XML, OpenVinoClassifier
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.quantize import openvino_graph, openvino_int8
from structbert_lite.runtime import OnnxClassifier, open_variant
from structbert_lite.steps import step_options
from tests.builders import TINY_VOCAB, run_steps, step_context, tiny_model

ov = pytest.importorskip("openvino")
TEXTS = [s[i:] + s[:i] for s in PARITY_SENTENCES for i in range(0, 12, 2)]  # 48 varied texts


@pytest.fixture(autouse=True)
def quiet_nncf():
    logging.getLogger("nncf").setLevel(logging.WARNING)


def build(model, work, options: dict, labels=None):
    """checkpoint → fp32 → openvino-int8, as the pipeline runs them."""
    loaded = load_classifier(save_checkpoint(model, TINY_VOCAB, work / "ckpt"))
    chain = [("fp32", "export", {}), ("openvino-int8", "openvino-int8", options)]
    built = run_steps(work, loaded, chain, texts=TEXTS, labels=labels)
    return loaded, built["fp32"], built["openvino-int8"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    work = tmp_path_factory.mktemp("ov")
    return (work, *build(tiny_model(layers=2, hidden=64, heads=2, seed=3), work, {"calibration_rows": 16}))


@pytest.fixture(scope="module")
def fp32_ir(chain):
    """The parent converted by OpenVINO, not quantized."""
    return openvino_int8.convert_onnx(chain[2].path / "model.onnx")


def test_step_makes_a_checked_int8_ir(chain):
    _, _, fp32, int8 = chain
    assert int8.format == "openvino" and int8.meta["engine"] == "openvino"
    wanted = {MODEL_XML, MODEL_BIN, "config.json", "tokenizer.json", "tokenizer_config.json"}
    assert wanted <= {p.name for p in int8.path.iterdir()}
    assert not (int8.path / "model.onnx").exists()
    meta = int8.meta["openvino"]
    assert meta["versions"]["nncf"] and meta["versions"]["openvino"].startswith(ov.__version__.split("-")[0])
    assert meta["calibration_rows"] == 16 and meta["nncf"]["subset_size"] == 16
    structure = meta["structure"]
    assert structure["per_group"]["layer.0"] == {"weight_matmuls": 6, "int8": 6, "kept_fp32": 0}
    assert structure["per_group"]["layer.1"]["int8"] == 6 and structure["FakeQuantize"] >= 12
    assert openvino_graph.int8_kernels(meta["runtime_kernels"]) >= 12  # the CPU really runs them in int8
    assert all(case["passed"] for case in meta["conversion_parity"]["cases"])
    record = meta["accuracy_control"]
    assert record["passed"] and not record["triggered"] and [t["method"] for t in record["tries"]] == ["nncf.quantize"]
    assert int8.meta["parent"] == "fp32" and int8.meta["variant"] == "openvino-int8"


def test_precision_is_recorded_as_run(chain):
    _, _, _, int8 = chain
    classifier = OpenVinoClassifier(int8.path, threads=1)
    assert int8.meta["openvino"]["inference_precision"] == classifier.inference_precision
    assert int8.meta["openvino"]["precision_hint"] is None  # "auto": the CPU's default, whatever it is


def test_int8_agrees_with_fp32_and_batching_without_padding_is_exact(chain):
    from structbert_lite.runtime import encode
    from structbert_lite.validate.batch_invariance import measure_batch_invariance

    _, _, fp32, int8 = chain
    ref = OnnxClassifier(fp32.path).logits(TEXTS)
    classifier = OpenVinoClassifier(int8.path, threads=1)
    got = classifier.logits(TEXTS)
    assert np.mean(ref.argmax(-1) == got.argmax(-1)) >= 0.95
    # Static scales: rows of one unpadded batch are computed exactly as alone (the GEMMs are row-independent)...
    for text in TEXTS[:8]:
        alone = classifier.logits_for_encoding(encode(classifier.tokenizer, [text]))
        copies = classifier.logits_for_encoding(encode(classifier.tokenizer, [text] * 5))
        assert np.array_equal(copies, np.repeat(alone, 5, axis=0))
    # ...but padding is not free: attention over a longer (masked) length rounds differently in float, and the
    # next FakeQuantize can turn that into one int8 step. Measured on a StructBERT-base-shaped model: max
    # |Δscore| 1.6e-3 in mixed-length batches (README "OpenVINO variant"); validate measures it per variant.
    record = measure_batch_invariance(classifier, TEXTS, max_score_diff=1e-4)
    assert record["max_abs_score_diff"] < 1e-2 and record["rows"] == len(TEXTS), record


def test_loads_with_plain_openvino_and_optimum_intel(chain):
    _, _, _, int8 = chain
    ours = open_variant(int8.path)  # no manifest yet: the engine comes from openvino_model.xml
    assert ours.engine == "openvino"
    texts = TEXTS[:6]
    expected = ours.logits(texts, batch_size=1)

    core = ov.Core()  # plain openvino + tokenizers, as a user without this package would
    from tokenizers import Tokenizer

    compiled = core.compile_model(core.read_model(str(int8.path / MODEL_XML)), "CPU")
    tokenizer = Tokenizer.from_file(str(int8.path / "tokenizer.json"))
    for text, row in zip(texts, expected, strict=True):
        enc = tokenizer.encode(text)
        feed = {"input_ids": [enc.ids], "attention_mask": [enc.attention_mask], "token_type_ids": [enc.type_ids]}
        np.testing.assert_allclose(compiled(feed)[0][0], row, atol=1e-4)

    optimum_intel = pytest.importorskip("optimum.intel")
    from transformers import AutoTokenizer

    model = optimum_intel.OVModelForSequenceClassification.from_pretrained(int8.path, compile=True)
    hf_tok = AutoTokenizer.from_pretrained(int8.path)
    for text, row in zip(texts, expected, strict=True):
        out = model(**hf_tok(text, return_tensors="np"))
        np.testing.assert_allclose(np.asarray(out.logits)[0], row, atol=1e-4)


def test_structure_check_refuses_an_unquantized_model(chain, fp32_ir):
    _, _, _, int8 = chain
    with pytest.raises(GraphStructureError, match="no MatMul is int8 at all"):
        openvino_graph.check_int8_structure(fp32_ir, num_layers=2)
    quantized = ov.Core().read_model(str(int8.path / MODEL_XML))
    with pytest.raises(GraphStructureError, match=r"layer\.2: no MatMul"):
        openvino_graph.check_int8_structure(quantized, num_layers=3)


def test_options_are_strict_and_patterns_checked(fp32_ir):
    with pytest.raises(ConfigError, match="options.calibraton_rows: unknown key"):
        step_options("openvino-int8", {"calibraton_rows": 3}, "openvino-int8")
    with pytest.raises(ConfigError, match="precision"):
        step_options("openvino-int8", {"precision": "int4"}, "openvino-int8")
    with pytest.raises(ConfigError, match="matches no node"):
        openvino_int8.pattern_ops(fp32_ir, [".*no_such_layer.*"])
    with pytest.raises(ConfigError, match="is not a regex"):
        openvino_int8.pattern_ops(fp32_ir, ["(unclosed"])
    assert len(openvino_int8.pattern_ops(fp32_ir, [r".*layer\.0/.*"])) == 6


def test_non_onnx_parent_and_missing_model_are_clear_errors(chain, tmp_path):
    work, loaded, fp32, int8 = chain
    ctx = step_context(work, loaded, name="bad", texts=TEXTS)
    options = step_options("openvino-int8", {}, "bad")
    with pytest.raises(ConfigError, match="needs an ONNX FP32 parent"):
        openvino_int8.run(int8, options, ctx)
    from structbert_lite.errors import ModelFileError

    with pytest.raises(ModelFileError, match="does not exist"):
        openvino_int8.convert_onnx(tmp_path / "model.onnx")


# --- accuracy-aware paths, on a model built to break under int8 (see tests/quantize/test_quantize.py) ---

BOUNDS = {"max_accuracy_drop": 10.0, "min_agreement": 0.9, "calibration_rows": 48}


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    from tests.quantize.test_quantize import sensitive_model

    work = tmp_path_factory.mktemp("sensitive")
    loaded = load_classifier(save_checkpoint(sensitive_model(), TINY_VOCAB, work / "ckpt"))
    fp32 = run_steps(work, loaded, [("fp32", "export", {})])["fp32"]
    labels = OnnxClassifier(fp32.path).logits(TEXTS).argmax(-1)  # FP32 is right by construction
    assert 0.3 < labels.mean() < 0.7
    return work, loaded, fp32, labels


def _int8(sensitive, name: str, fallback: dict, **options):
    work, loaded, fp32, labels = sensitive
    ctx = step_context(work, loaded, name=name, texts=TEXTS, labels=labels)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    options = step_options("openvino-int8", {"calibration_rows": 16, "fallback": {**BOUNDS, **fallback}, **options},
                           name)
    return openvino_int8.run(fp32, options, ctx)


def test_accuracy_control_recovers_the_sensitive_model(sensitive):
    made = _int8(sensitive, "ac", {"methods": ["accuracy_control"]})
    record = made.meta["openvino"]["accuracy_control"]
    first, last = record["tries"][0], record["tries"][-1]
    assert record["triggered"] and first["agreement"] < BOUNDS["min_agreement"], record["tries"]
    assert last["method"] == "nncf.quantize_with_accuracy_control" and last["reverted_ops"]
    assert record["passed"] and record["chosen_try"] == 2, record["tries"]
    assert made.meta["openvino"]["structure"]["int8_weight_matmuls"] > 0  # still int8 where NNCF kept it


def test_ignored_scope_keeps_the_sensitive_layer_fp32(sensitive):
    # The centred classifier leaves near-ties that an int8 head flips: keep the head FP32 by config (this also
    # exercises ignored_patterns), so the search has the encoder layers to rank.
    head = [r".*(pooler|classifier)/.*"]
    made = _int8(sensitive, "scope", {"methods": ["ignored_scope"], "max_tries": 1}, ignored_patterns=head)
    record = made.meta["openvino"]["accuracy_control"]
    assert record["triggered"] and record["passed"], record["tries"]
    assert set(record["sensitivity"]) == {"layer.0", "layer.1"}
    assert max(record["sensitivity"], key=record["sensitivity"].get) == "layer.1"
    assert record["tries"][-1]["fp32_groups"] == ["layer.1"]
    per_group = made.meta["openvino"]["structure"]["per_group"]
    assert per_group["layer.1"]["kept_fp32"] == 6 and per_group["layer.0"]["int8"] == 6
    assert per_group["head"] == {"weight_matmuls": 2, "int8": 0, "kept_fp32": 2}
    # The same IR, checked without being told what was kept FP32 on purpose: NNCF skipping a layer silently
    # (a pattern that matched too much, a graph it did not recognise) is a structure error.
    saved = ov.Core().read_model(str(made.path / MODEL_XML))
    with pytest.raises(GraphStructureError, match=r"layer\.1: 0/6 MatMuls int8"):
        openvino_graph.check_int8_structure(saved, num_layers=2)
    got = OpenVinoClassifier(made.path).logits(TEXTS).argmax(-1)
    assert np.mean(got == sensitive[3]) >= BOUNDS["min_agreement"]


def test_no_fallback_keeps_the_failing_try_for_the_gate(sensitive):
    made = _int8(sensitive, "off", {"enabled": False})
    record = made.meta["openvino"]["accuracy_control"]
    assert not record["passed"] and len(record["tries"]) == 1
