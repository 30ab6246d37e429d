"""A published set given where a variant belongs runs its fastest variant on a CPU like this one; the CPU flags
are injected (no test depends on the machine it runs on)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from structbert_lite.cpu import isa_of
from structbert_lite.variant_choice import choose_variant, resolve_variant

AMX = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"]
VNNI = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"]
AVX2 = ["avx2", "fma"]
REDUCE_RANGE = {"isa": "avx2", "required_cpu_flags": ["avx2", "fma"],
                "tool": "onnxruntime.quantization.quantize_dynamic"}
FULL_RANGE = {"isa": "avx512_vnni", "required_cpu_flags": ["avx2", "avx512f", "avx512bw", "avx512_vnni"],
              "tool": "onnxruntime.quantization.quantize_dynamic"}


def write_set(root: Path, speedups: dict[str, float], measured_flags: list[str], int8=REDUCE_RANGE,
              published=None, measured_on: bool = True) -> Path:
    """fp32, int8-dynamic, openvino-int8 (and a PyTorch-only student folder), with a report.json."""
    manifests = {"fp32": {"engine": "onnxruntime"}, "int8-dynamic": {"engine": "onnxruntime", "quantization": int8},
                 "openvino-int8": {"engine": "openvino", "openvino": {}}, "student": {"format": "checkpoint"}}
    for name, manifest in manifests.items():
        folder = root / name
        folder.mkdir(parents=True)
        model = {"openvino": "openvino_model.xml", "onnxruntime": "model.onnx"}.get(manifest.get("engine"))
        (folder / (model or "pytorch_model.bin")).write_bytes(b"x")
        (folder / "manifest.json").write_text(json.dumps({"variant": name, **manifest}), encoding="utf-8")
    isa = isa_of(measured_flags)
    variants = [{"name": n, "published": (published or {}).get(n, True),
                 "metrics": {"speedup": s, **({"measured_on": {"cpu": "Xeon", "isa": isa}} if measured_on else {})}}
                for n, s in speedups.items()]
    report = {"settings": {"speedup_point": [1, 32]}, "variants": variants,
              "machine": {"cpu": "Xeon", "cpu_flags": measured_flags}}
    (root / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return root


SPEEDUPS = {"fp32": 1.0, "int8-dynamic": 4.7, "openvino-int8": 5.2, "student": 30.0}


@pytest.mark.parametrize(("flags", "isa"), [
    (AMX, "amx"), (VNNI, "avx512_vnni"), (["avx2", "avx_vnni"], "avx_vnni"),
    (["avx2", "avx512f", "avx512bw"], "avx512"),
    (AVX2, "avx2"), (["neon"], "other"), (None, "unknown"), (["AVX2", "FMA"], "avx2"),
])
def test_isa_of_names_the_strongest_instruction_set(flags, isa):
    assert isa_of(flags) == isa


def test_on_a_cpu_like_the_measuring_one_the_fastest_measured_runs(tmp_path):
    root = write_set(tmp_path / "demo", SPEEDUPS, AMX)
    choice = choose_variant(root, flags=AMX)
    assert choice.name == "openvino-int8" and choice.folder == root / "openvino-int8"  # the student has no ONNX/IR
    assert ("the fastest in its report.json at 1×32 (5.20x PyTorch FP32), measured on Xeon (amx) like this CPU"
            in choice.reason)


def test_without_vnni_openvino_int8_is_left_out_and_the_reason_says_the_cpu_differs(tmp_path):
    root = write_set(tmp_path / "demo", SPEEDUPS, AMX)
    choice = choose_variant(root, flags=AVX2)
    assert choice.name == "int8-dynamic"
    assert "measured on Xeon (amx), not on a CPU like this one (avx2)" in choice.reason
    assert "openvino-int8 left out: OpenVINO int8 pays only with VNNI or AMX, this CPU is avx2" in choice.reason


def test_a_variant_tuned_for_flags_this_cpu_lacks_is_left_out(tmp_path):
    root = write_set(tmp_path / "demo", {"fp32": 1.0, "int8-dynamic": 4.7}, VNNI, int8=FULL_RANGE)
    choice = choose_variant(root, flags=AVX2)
    assert choice.name == "fp32"
    assert ("int8-dynamic left out: tuned for avx512_vnni, this CPU lacks avx512f, avx512bw, avx512_vnni"
            in choice.reason)
    assert choose_variant(root, flags=VNNI).name == "int8-dynamic"


def test_unreadable_flags_keep_the_measured_ranking_and_say_so(tmp_path):
    root = write_set(tmp_path / "demo", SPEEDUPS, AMX)
    choice = choose_variant(root, flags=None)
    assert choice.name == "openvino-int8" and "flags could not be read" in choice.reason


def test_an_old_report_without_measured_on_uses_the_reports_machine(tmp_path):
    root = write_set(tmp_path / "demo", SPEEDUPS, VNNI, measured_on=False)
    assert "(avx512_vnni) like this CPU" in choose_variant(root, flags=VNNI).reason
    assert "not on a CPU like this one (amx)" in choose_variant(root, flags=AMX).reason


def test_unpublished_variants_and_a_missing_report_fall_back(tmp_path):
    root = write_set(tmp_path / "demo", SPEEDUPS, AMX, published={"openvino-int8": False})
    assert choose_variant(root, flags=AMX).name == "int8-dynamic"
    (root / "report.json").unlink()
    choice = choose_variant(root, flags=AMX)
    assert choice.name == "int8-dynamic" and "no speed figure" in choice.reason


def test_a_named_variant_is_never_second_guessed(tmp_path, caplog):
    root = write_set(tmp_path / "demo", SPEEDUPS, AMX)
    with caplog.at_level(logging.INFO, logger="structbert_lite.variant_choice"):
        assert resolve_variant(root / "fp32", flags=AMX) == root / "fp32"
        assert resolve_variant(tmp_path / "elsewhere", flags=AMX) == tmp_path / "elsewhere"  # not a set: left alone
    assert not caplog.records


def test_resolving_a_set_logs_one_line_naming_the_variant_and_why(tmp_path, caplog):
    root = write_set(tmp_path / "demo", SPEEDUPS, AMX)
    with caplog.at_level(logging.INFO, logger="structbert_lite.variant_choice"):
        assert resolve_variant(root, flags=AVX2) == root / "int8-dynamic"
    [record] = caplog.records
    assert record.getMessage().startswith(f"{root} is a published set: using int8-dynamic, the fastest in its report")
    assert "\n" not in record.getMessage()
