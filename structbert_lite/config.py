"""Pipeline configuration: YAML files validated against a pydantic schema.

Unknown keys, wrong types and impossible values are errors naming the key and the file
(Olive-style: ``extra="forbid"``). ``configs/*.yaml`` mirror these classes one to one; every field has a
one-line description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from structbert_lite.errors import ConfigError

VARIANTS = ("fp32", "fp32-optimized", "int8-dynamic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    source: str = Field("demo", description="'demo', a ModelScope id, 'hf:<owner>/<name>', or a local directory")
    revision: Optional[str] = Field(None, description="ModelScope/HF revision to pin (None: the default branch)")
    cache_dir: Optional[str] = Field(None, description="download cache folder (None: the hub library's default)")
    max_length: int = Field(128, ge=8, le=512, description="truncation length in tokens for eval and serving")


class DemoConfig(_Strict):
    layers: int = Field(2, ge=1, le=12, description="transformer layers of the demo model")
    hidden_size: int = Field(128, ge=16, le=768, description="hidden size of the demo model")
    heads: int = Field(2, ge=1, le=12, description="attention heads of the demo model")
    intermediate_size: int = Field(512, ge=16, description="feed-forward size of the demo model")
    epochs: int = Field(2, ge=1, le=20, description="training epochs")
    batch_size: int = Field(32, ge=1, le=512, description="training batch size")
    learning_rate: float = Field(5e-4, gt=0, lt=1, description="AdamW learning rate")
    max_length: int = Field(64, ge=8, le=512, description="truncation length while training")
    test_share: float = Field(0.1, gt=0, lt=0.9, description="share of the deduplicated reviews held out for eval")
    seed: int = Field(20240601, description="seed for the split, init and training order")
    min_accuracy: float = Field(0.80, ge=0, le=1, description="training fails if held-out accuracy is below this")

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads})")
        return self


class EvalConfig(_Strict):
    source: str = Field("demo", description="'demo' (held-out split), a CSV/TSV/JSONL/Parquet file, or a dataset id")
    split: str = Field("test", description="split to use when source is a dataset id")
    text_column: str = Field("text", description="column holding the text")
    label_column: str = Field("label", description="column holding the label (0/1, 负面/正面, negative/positive)")
    max_bad_share: float = Field(0.05, ge=0, le=1, description="fail if more than this share of rows is unusable")
    limit: Optional[int] = Field(None, ge=1, description="evaluate only the first N usable rows (None: all)")
    flipped_examples: int = Field(20, ge=0, description="how many label-flipped texts to list in the report")


class ExportConfig(_Strict):
    opset: int = Field(17, ge=14, le=21, description="ONNX opset of the exported graph")
    parity_tolerance: float = Field(1e-4, gt=0, description="max abs logit diff allowed between ONNX FP32 and PyTorch")
    parity_batch_sizes: list[int] = Field([1, 4], min_length=1, description="batch sizes of the parity check")
    parity_lengths: list[int] = Field([8, 32, 128], min_length=1, description="max token lengths of the parity check")

    @field_validator("parity_batch_sizes", "parity_lengths")
    @classmethod
    def _positive(cls, values):
        if any(v < 1 for v in values):
            raise ValueError("every entry must be >= 1")
        return values


class OptimizeConfig(_Strict):
    enabled: bool = Field(True, description="produce the fp32-optimized variant (ORT transformer fusions)")
    opt_level: int = Field(1, ge=0, le=2, description="onnxruntime graph optimization level applied by the optimizer (0-2)")
    enable_gelu: bool = Field(True, description="fuse Gelu")
    enable_layer_norm: bool = Field(True, description="fuse LayerNormalization")
    enable_attention: bool = Field(True, description="fuse multi-head attention into Attention")
    enable_skip_layer_norm: bool = Field(True, description="fuse residual add + LayerNorm into SkipLayerNormalization")
    enable_embed_layer_norm: bool = Field(True, description="fuse embeddings + LayerNorm into EmbedLayerNormalization")
    enable_bias_skip_layer_norm: bool = Field(True, description="fold bias adds into SkipLayerNormalization")
    enable_bias_gelu: bool = Field(True, description="fold bias adds into BiasGelu/FastGelu")
    enable_gelu_approximation: bool = Field(False, description="replace Gelu by FastGelu (changes numerics)")
    require_fusions: bool = Field(True, description="fail when Attention/SkipLayerNorm/Gelu fusions are missing")
    parity_tolerance: float = Field(1e-3, gt=0, description="max abs logit diff allowed vs PyTorch after fusion")


class FallbackConfig(_Strict):
    enabled: bool = Field(True, description="keep sensitive nodes in FP32 when int8 misses max_accuracy_drop")
    max_accuracy_drop: float = Field(0.5, ge=0, description="accuracy drop (points) that triggers the fallback")
    min_agreement: float = Field(0.99, ge=0, le=1, description="label agreement with FP32 below which fallback triggers")
    max_tries: int = Field(4, ge=1, le=20, description="re-quantization attempts before giving up")
    calibration_rows: int = Field(512, ge=8, description="eval rows used to rank node sensitivity and check tries")


class QuantizeConfig(_Strict):
    enabled: bool = Field(True, description="produce the int8-dynamic variant")
    preset: Literal["auto", "avx2", "avx512", "avx512_vnni"] = Field(
        "auto", description="CPU preset: weight type and reduce_range for the instruction set ('auto' detects it)"
    )
    per_channel: bool = Field(True, description="per-output-channel weight scales")
    reduce_range: Optional[bool] = Field(None, description="7-bit weights (None: the preset decides)")
    weight_type: Optional[Literal["int8", "uint8"]] = Field(None, description="weight data type (None: the preset decides)")
    symmetric_weights: bool = Field(True, description="symmetric weight quantization (zero point 0)")
    op_types: list[str] = Field(
        ["MatMul", "Attention", "EmbedLayerNormalization"],
        min_length=1,
        description="op types to quantize (MatMul, Attention, EmbedLayerNormalization = the embedding tables, Gather)",
    )
    nodes_to_exclude: list[str] = Field([], description="node names kept in FP32")
    fallback: FallbackConfig = Field(default_factory=FallbackConfig, description="accuracy-aware fallback")


class LatencyConfig(_Strict):
    batch_sizes: list[int] = Field([1, 8], min_length=1, description="batch sizes of the latency grid")
    seq_lengths: list[int] = Field([16, 32, 64, 128], min_length=1, description="sequence lengths of the latency grid")
    warmup: int = Field(3, ge=0, description="untimed runs before each grid point")
    repeats: int = Field(15, ge=1, description="timed runs per grid point")
    rounds: int = Field(2, ge=1, description="alternate contenders over this many rounds, keep the median")


class ValidateConfig(_Strict):
    threads: int = Field(2, ge=1, le=256, description="intra-op threads for every contender (same budget for all)")
    latency: LatencyConfig = Field(default_factory=LatencyConfig, description="latency grid")
    throughput_batch_size: int = Field(32, ge=1, description="batch size of the throughput run (length-sorted buckets)")
    throughput_rows: Optional[int] = Field(1000, ge=1, description="eval texts used for throughput (None: all)")
    memory: bool = Field(True, description="measure peak RSS and cold start of a fresh process per variant")
    speedup_point: tuple[int, int] = Field((1, 32), description="(batch, seq_len) grid point that defines 'speedup'")


class GateConfig(_Strict):
    max_accuracy_drop: Optional[float] = Field(None, ge=0, description="max accuracy drop vs baseline, points")
    min_agreement: Optional[float] = Field(None, ge=0, le=1, description="min label agreement with baseline")
    max_logit_diff: Optional[float] = Field(None, gt=0, description="max abs logit diff vs baseline")
    min_speedup: Optional[float] = Field(None, gt=0, description="min speedup vs baseline at validate.speedup_point")
    max_size_mb: Optional[float] = Field(None, gt=0, description="max model.onnx size in MB")
    max_peak_rss_mb: Optional[float] = Field(None, gt=0, description="max peak RSS of a fresh serving process, MB")


class PipelineConfig(_Strict):
    name: str = Field(..., min_length=1, description="model name; `make convert` publishes into artifacts/<name>/")
    model: ModelConfig = Field(default_factory=ModelConfig, description="model source")
    demo: DemoConfig = Field(default_factory=DemoConfig, description="the offline demo model (model.source: demo)")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation data")
    export: ExportConfig = Field(default_factory=ExportConfig, description="PyTorch -> ONNX FP32")
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig, description="ORT transformer fusions")
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig, description="dynamic int8")
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate", description="measurements")
    gate: dict[str, GateConfig] = Field(default_factory=dict, description="per-variant publishing thresholds")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @field_validator("gate")
    @classmethod
    def _known_variants(cls, gate):
        unknown = sorted(set(gate) - set(VARIANTS))
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; expected some of {list(VARIANTS)}")
        return gate

    @model_validator(mode="after")
    def _int8_needs_fusions(self):
        if self.quantize.enabled and not self.optimize.enabled:
            raise ValueError("quantize.enabled needs optimize.enabled: int8 is made from the fused graph")
        return self

    @property
    def validate(self) -> ValidateConfig:  # type: ignore[override]  # 'validate' is a pydantic v1 name
        return self.validate_

    def resolved(self) -> dict:
        """The config as plain data, as recorded in manifests."""
        return self.model_dump(mode="json", by_alias=True)


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/*.yaml for the accepted keys)"
        lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict, origin: str = "<dict>") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML pipeline config; errors name the key and the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (see configs/ for examples)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    return parse_config(data, str(path))
