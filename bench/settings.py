"""What one benchmark run measures: model shapes, the grid, repeats, rounds and budgets, as data.

Two named presets: `BenchSettings.full_run()` (StructBERT-base and the 4-layer student shape, `make bench`,
sized for about 20 minutes on 2 cores) and `BenchSettings.quick_run()` (tiny shapes and few repeats, for
development and the test). Every figure in `results.json` traces back to these fields, written there verbatim.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from structbert_lite.measure.plan import MeasurePlan

# (batch, seq_len) latency points: batch 1 over lengths, then the two batched points.
LATENCY_GRID = ((1, 32), (1, 64), (1, 128), (8, 64), (32, 128))
# StructBERT-base (ModelScope nlp_structbert_sentiment-classification_chinese-base) and a distilled student on the
# same vocabulary (4 layers x 312, the MiniRBT/TinyBERT-4 shape); `full_run` measures the config's student instead.
SHAPES = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "student": {"hidden_size": 312, "num_hidden_layers": 4, "num_attention_heads": 12, "intermediate_size": 1200},
}
TINY_SHAPES = {
    "base": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "student": {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48},
}
VOCAB_SIZE = 21128  # bert-base-chinese / StructBERT-base vocabulary
# "Ours" are built exactly as `make convert` publishes them: this config's variants, through the steps.
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "structbert-base.yaml"


STUDENT_FIELDS = {"layers": "num_hidden_layers", "hidden_size": "hidden_size", "heads": "num_attention_heads",
                  "intermediate_size": "intermediate_size"}


def config_student_shape(config_path, teacher: dict) -> dict:
    """The student shape of the config's first distill step (its null sizes: the teacher's; no distill step:
    `SHAPES["student"]`), so `make bench` measures the student the config really builds."""
    import yaml

    data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    step = next((v for v in data.get("variants") or [] if v.get("step") == "distill"), None)
    if step is None:
        return dict(SHAPES["student"])
    options = step.get("options") or {}
    shape = {field: options.get(key) or teacher[field] for key, field in STUDENT_FIELDS.items()}
    if options.get("layers") is None:
        shape["num_hidden_layers"] = max(1, teacher["num_hidden_layers"] // 2)  # the step's default: half
    return shape


@dataclasses.dataclass
class BenchSettings:
    """One benchmark run. Times are wall-clock seconds, sizes are tokens."""

    threads: int = 2  # intra-op threads of every contender (inter-op: 1)
    model_dir: Optional[str] = None  # a ModelScope-layout checkpoint for the base shape; None: random weights
    config_path: Optional[str] = str(DEFAULT_CONFIG)  # pipeline config whose variants are "ours"
    shapes: tuple = ("base", "student")  # which of `shape_configs` to run, in report order
    peers: Optional[tuple] = None  # the peers to run (None: all of `contenders.PEERS`)
    shape_configs: dict = dataclasses.field(default_factory=lambda: {k: dict(v) for k, v in SHAPES.items()})
    seed: int = 20240601  # random weights, synthetic ids, review sample
    max_length: int = 128  # truncation of the throughput reviews
    latency_grid: tuple = LATENCY_GRID  # (batch, seq_len) points
    rounds: int = 3  # each contender once per round in a fresh process, order rotated per round; medians
    settle_s: float = 5.0  # pause after preparation (after flushing its writes) before the first timed block
    warmup_runs: int = 1  # untimed runs per latency point before timing it
    min_repeats: int = 2  # timed runs per latency point per round, at least ...
    max_repeats: int = 30  # ... and at most
    point_budget_s: float = 1.0  # ... and otherwise as many as fit into this per point and round
    throughput_rows: int = 2000  # real reviews scored for throughput (corpus throughput)
    throughput_batch_sizes: tuple = (1, 8, 32)  # candidates; each contender keeps its best (tuned on a sample)
    throughput_tune_texts: int = 16  # texts of median length scored per candidate batch size while tuning
    throughput_cap_s: float = 30.0  # stop a throughput block after this long (reported as partial)
    calibration_texts: int = 64  # reviews NNCF calibrates on (OpenVINO int8 peer), tokenized as served
    ceiling_shape: tuple = (512, 768, 3072)  # (M, K, N) of the GEMM ceiling micro-graphs
    ceiling_repeats: int = 10
    profile_runs: int = 20  # runs per point when profiling our int8 graph by op type
    static_shapes: bool = True  # static vs dynamic shapes of our OpenVINO int8 (base shape), `bench.static_shapes`
    static_rounds: int = 3  # alternating dynamic/static blocks per timed length
    static_repeats: int = 10  # timed runs per block
    timeout_s: float = 900.0  # one worker process
    quick: bool = False

    def __post_init__(self):
        unknown = [s for s in self.shapes if s not in self.shape_configs]
        if unknown or not self.shapes:
            raise ValueError(f"unknown shape(s) {unknown}; choose from {sorted(self.shape_configs)}")

    @classmethod
    def full_run(cls, **overrides) -> "BenchSettings":
        """StructBERT-base, and the student shape the config's distill step builds from it."""
        if "shape_configs" not in overrides:
            shapes = {k: dict(v) for k, v in SHAPES.items()}
            shapes["student"] = config_student_shape(overrides.get("config_path", DEFAULT_CONFIG), shapes["base"])
            overrides["shape_configs"] = shapes
        return cls(**overrides)

    @classmethod
    def quick_run(cls, **overrides) -> "BenchSettings":
        """Tiny shapes, one round, a small throughput sample: seconds, not minutes."""
        values = dict(
            shape_configs={k: dict(v) for k, v in TINY_SHAPES.items()},
            rounds=1, settle_s=0.0, min_repeats=2, max_repeats=5, point_budget_s=0.1, throughput_rows=64,
            throughput_batch_sizes=(8, 32), throughput_tune_texts=8, throughput_cap_s=10.0, calibration_texts=8,
            ceiling_shape=(128, 256, 512), ceiling_repeats=3, profile_runs=3, static_rounds=1, static_repeats=3,
            timeout_s=180.0, quick=True,
        )
        values.update(overrides)
        return cls(**values)

    def plan(self) -> MeasurePlan:
        """The measurement core's plan: throughput in the last round only (it is the longest block)."""
        return MeasurePlan(
            threads=self.threads, max_length=self.max_length, latency_grid=self.latency_grid,
            warmup_runs=self.warmup_runs, min_repeats=self.min_repeats, max_repeats=self.max_repeats,
            point_budget_s=self.point_budget_s, throughput_batch_sizes=self.throughput_batch_sizes,
            throughput_tune_texts=self.throughput_tune_texts, throughput_cap_s=self.throughput_cap_s,
            throughput_rounds="last", rounds=self.rounds, seed=self.seed, timeout_s=self.timeout_s,
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
