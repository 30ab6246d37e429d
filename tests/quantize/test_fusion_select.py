"""keep: faster — the fuse step times each fusion group and keeps only those that do not slow this model down."""

from __future__ import annotations

import pytest

from structbert_lite.convert.checkpoint import load_classifier, save_checkpoint
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.quantize import fusion_select
from structbert_lite.steps import step_options
from tests.builders import TINY_VOCAB, run_steps, tiny_model


def latency(rounds: dict[str, list[list[float]]], points=("1x32", "8x64")) -> dict:
    """``{graph: {point: {"rounds_p50": [...]}}}`` from per-round p50s listed per point."""
    return {name: {p: {"rounds_p50": per_point[i], "p50": sorted(per_point[i])[len(per_point[i]) // 2]}
                   for i, p in enumerate(points)} for name, per_point in rounds.items()}


def test_a_group_is_dropped_only_when_every_round_is_faster_without_it():
    measured = latency({
        "all": [[10, 10, 10], [40, 40, 40]],
        "all-gelu": [[9, 9, 9.5], [36, 37, 38]],  # ≥ 3% faster without in every round: drop
        "all-skip_layer_norm": [[9, 11, 9], [36, 44, 36]],  # one round slower: keep
        "all-attention": [[8, 8, 8], [30, 30, 30]],  # faster without, but required
        "all-layer_norm": [[10, 10.1, 9.9], [40, 40, 40]],  # a tie: keep
    })
    groups = ["gelu", "skip_layer_norm", "attention", "layer_norm"]
    decisions = fusion_select.decide(measured, groups, ["attention"], 0.03)
    assert decisions["gelu"]["kept"] is False and decisions["gelu"]["time_without_over_with"][0] < 0.97
    assert decisions["skip_layer_norm"]["kept"] is True
    assert decisions["attention"] == {"kept": True, "reason": "required (timing alone would drop it)",
                                      "time_without_over_with": [0.7746, 0.7746, 0.7746]}
    assert decisions["layer_norm"]["kept"] is True


def test_round_ratios_are_geometric_means_over_points():
    measured = latency({"all": [[10], [10]], "x": [[5], [20]]})
    assert fusion_select.round_ratios(measured, "x", "all") == [pytest.approx(1.0)]


def test_options_name_known_groups():
    from structbert_lite.errors import ConfigError

    with pytest.raises(ConfigError, match="required_fusions"):
        step_options("fuse", {"required_fusions": ["flash"]}, "fp32-optimized")
    assert step_options("fuse", {}, "fp32-optimized").keep == "all"  # timing is opt-in (configs turn it on)


def test_fuse_step_times_the_groups_and_records_the_decision(tmp_path):
    model = tiny_model(layers=2, hidden=64, heads=2, seed=3)
    loaded = load_classifier(save_checkpoint(model, TINY_VOCAB, tmp_path / "ckpt"))
    options = {  # two groups (one required) keep the test to 4 graphs x 1 round
        "keep": "faster", "selection_rounds": 1, "selection_grid": [[1, 16]], "required_fusions": ["attention"],
        "enable_skip_layer_norm": False, "enable_layer_norm": False, "enable_embed_layer_norm": False,
    }
    built = run_steps(tmp_path, loaded, [("fp32", "export", {}), ("fp32-optimized", "fuse", options)],
                      texts=list(PARITY_SENTENCES))
    fuse = built["fp32-optimized"].meta["fuse"]
    selection = fuse["selection"]
    assert set(selection["median_ms"]) == {"parent", "all", "all-attention", "all-gelu"}
    assert all(set(points) == {"1x16"} for points in selection["median_ms"].values())
    assert set(selection["decisions"]) == {"attention", "gelu"} and selection["decisions"]["attention"]["kept"]
    gelu_kept = selection["decisions"]["gelu"]["kept"]
    assert selection["kept_flags"]["enable_gelu"] is gelu_kept
    assert ("Gelu|BiasGelu|FastGelu" in fuse["fusions"]) is gelu_kept  # the published graph is the decided one
    assert fuse["fusions"]["Attention"]["found"] == 2
    assert len(selection["all_over_parent"]) == 1
    assert not (built["fp32-optimized"].path / ".fusion-select").exists()
