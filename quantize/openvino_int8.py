"""Step ``openvino-int8`` (fp32 → openvino-int8): OpenVINO IR with NNCF post-training static int8, checked.

    model.onnx ─► ov.convert_model ─► parity vs the parent (f32) ─► nncf.quantize(TRANSFORMER, calibration
    texts tokenized as served) ─► scored vs the parent ─► openvino_model.xml/.bin
                                        │ misses the bounds (accuracy drop, label agreement)?
                                        ├─► nncf.quantize_with_accuracy_control (metric: agreement with the parent)
                                        └─► our ignored scope: the k most sensitive layers kept FP32

Static int8: activation scales are fixed at calibration, so unlike dynamic int8 a text's logits should not
depend on its batch neighbours (validate measures it for every variant; see README "OpenVINO variant").
The IR must hold int8 weights and a FakeQuantize in front of every weight MatMul of every layer that was not
deliberately kept in FP32 (`openvino_graph.check_int8_structure`), and the CPU must really run them in int8
(`openvino_graph.runtime_precisions`); either miss is a `GraphStructureError`.

Every try (what was kept FP32, its scores, its time) lands in the manifest under ``openvino.tries``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Iterator, Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from structbert_lite.artifact import MODEL_NAME, Artifact, copy_companions
from structbert_lite.config import Bool, Int
from structbert_lite.errors import ConfigError, GraphStructureError, ModelFileError
from structbert_lite.openvino_runtime import MODEL_XML, OpenVinoClassifier, compile_ov_model, read_ov_model
from structbert_lite.quantize import fallback, openvino_graph
from structbert_lite.quantize.onnx_graph import model_dims
from structbert_lite.runtime import OnnxClassifier, create_session, encode, load_tokenizer
from structbert_lite.steps import StepContext, StepOptions

logger = logging.getLogger(__name__)

PARITY_BATCHES, PARITY_LENGTHS = (1, 4), (8, 32, 128)


class FallbackOptions(fallback.FallbackOptions):
    methods: list[Literal["accuracy_control", "ignored_scope"]] = Field(
        ["accuracy_control", "ignored_scope"],
        min_length=1,
        description="what to try, in order, when int8 misses the bounds: NNCF's quantize_with_accuracy_control, "
        "then our own search keeping the most sensitive layers FP32",
    )
    accuracy_control_iterations: Int = Field(
        20, ge=1, le=500, description="most ops NNCF's accuracy control reverts to FP32, one validation each"
    )


class Options(StepOptions):
    calibration_rows: Int = Field(300, ge=1, description="calibration texts for activation ranges (nncf subset_size)")
    preset: Optional[Literal["mixed", "performance"]] = Field(
        None, description="NNCF preset (None: NNCF's transformer default, mixed = asymmetric activations)"
    )
    overflow_fix: Optional[Literal["enable", "first_layer_only", "disable"]] = Field(
        None, description="7-bit weights against u8 x s8 saturation on CPUs without VNNI (None: NNCF's default)"
    )
    smooth_quant: Bool = Field(
        True, description="NNCF SmoothQuant for the transformer MatMuls (off in accuracy control)"
    )
    fast_bias_correction: Bool = Field(True, description="NNCF's fast bias correction (false: the slower, finer one)")
    ignored_patterns: list[str] = Field([], description="regexes of node names kept in FP32")
    precision: Literal["auto", "f32", "bf16"] = Field(
        "auto", description="precision of the non-int8 ops: auto = the CPU's default (bf16 where it has BF16/AMX)"
    )
    parity_tolerance: float = Field(
        1e-3, gt=0, description="max |Δlogit| of the OpenVINO FP32 conversion vs the parent"
    )
    fallback: FallbackOptions = Field(default_factory=FallbackOptions, description="accuracy-aware fallback")

    @property
    def precision_hint(self) -> Optional[str]:
        return None if self.precision == "auto" else self.precision


def convert_onnx(path: Path):
    """``ov.convert_model`` of an ONNX file, with one clear line for a missing or unreadable file.

    ``convert_model`` runs OpenVINO's conversion passes, so NNCF quantizes the fused graph (StructBERT-base: 647
    ops with 12 ``ScaledDotProductAttention`` and 12 ``Gelu``); the bench's NNCF peer quantizes ``Core.read_model``'s
    unfused one (1,376 ops). Both IRs hold 74 FakeQuantize and 74 int8 weight MatMuls, and the CPU compiles both to
    74 int8 FullyConnected + 12 int8 attention MatMuls; they timed a tie on an AVX2 EPYC (docs/benchmarks.md).
    """
    import openvino as ov

    if not Path(path).is_file():
        raise ModelFileError(f"ONNX model {path} does not exist: the openvino-int8 step needs an fp32 ONNX parent")
    try:
        return ov.convert_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpConversionFailure, RuntimeError...: one line, whatever the type
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"OpenVINO cannot convert {path} ({first}); re-export it (structbert-lite run)") from None


def check_conversion(fp32_model, parent: Path, ctx: StepContext, tolerance: float) -> list[dict]:
    """OpenVINO's FP32 translation (run at f32) must give the parent's logits: conversion bugs are not int8 error."""
    from structbert_lite.parity import check_parity

    session = create_session(parent / MODEL_NAME, ctx.threads)
    compiled = compile_ov_model(fp32_model, ctx.threads, "f32")
    lengths = sorted({min(n, ctx.max_length) for n in PARITY_LENGTHS})
    return check_parity(
        reference=lambda feed: session.run(["logits"], feed)[0],
        candidate=lambda feed: compiled(feed)[0],
        tokenizer_dir=ctx.tokenizer_dir,
        batch_sizes=PARITY_BATCHES,
        lengths=lengths,
        tolerance=tolerance,
        label="OpenVINO FP32 conversion (vs the parent ONNX)",
    )


def calibration_feeds(ctx: StepContext, rows: int) -> list[dict[str, np.ndarray]]:
    """One feed per calibration text, tokenized exactly as served (same tokenizer, truncation, no padding)."""
    texts = list(ctx.calibration_texts)[:rows]
    if not texts:
        raise ConfigError("openvino-int8 needs calibration texts (the eval set); the run has none")
    tokenizer = load_tokenizer(ctx.tokenizer_dir, ctx.max_length)
    return [encode(tokenizer, [text]) for text in texts]  # (1, seq) each


def nncf_settings(options: Options, rows: int, smooth_quant: Optional[bool] = None) -> dict:
    """The NNCF arguments as plain data (for the manifest)."""
    return {
        "model_type": "transformer",
        "preset": options.preset or "mixed (nncf default for transformers)",
        "subset_size": rows,
        "fast_bias_correction": options.fast_bias_correction,
        "smooth_quant": options.smooth_quant if smooth_quant is None else smooth_quant,
        "overflow_fix": options.overflow_fix or "nncf default",
        "ignored_patterns": list(options.ignored_patterns),
    }


def _nncf_kwargs(options: Options, feeds, ignored_names: Sequence[str], smooth_quant: bool) -> dict:
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    advanced = AdvancedQuantizationParameters()
    if not smooth_quant:
        advanced.smooth_quant_alphas = AdvancedSmoothQuantParameters(matmul=-1)  # -1 disables it
    if options.overflow_fix:
        advanced.overflow_fix = OverflowFix(options.overflow_fix)
    ignored = None
    if ignored_names or options.ignored_patterns:
        ignored = nncf.IgnoredScope(names=list(ignored_names), patterns=list(options.ignored_patterns))
    return {
        "model_type": nncf.ModelType.TRANSFORMER,
        "preset": nncf.QuantizationPreset(options.preset) if options.preset else None,
        "subset_size": len(feeds),
        "fast_bias_correction": options.fast_bias_correction,
        "ignored_scope": ignored,
        "advanced_parameters": advanced,
    }


def quantize_model(fp32_model, feeds, options: Options, ignored_names: Sequence[str] = ()):
    """``nncf.quantize`` with our settings; ``ignored_names`` (weight MatMuls) stay FP32."""
    import nncf

    kwargs = _nncf_kwargs(options, feeds, ignored_names, options.smooth_quant)
    return nncf.quantize(fp32_model, nncf.Dataset(feeds), **kwargs)


class Scorer:
    """Scores candidate models against the FP32 parent on the calibration texts, as `fallback` scores int8-dynamic."""

    def __init__(self, parent: Path, ctx: StepContext, fcfg: FallbackOptions, precision: Optional[str]):
        self.texts = list(ctx.calibration_texts)[: fcfg.calibration_rows]
        self.ctx, self.fcfg, self.precision = ctx, fcfg, precision
        self.reference = OnnxClassifier(parent, max_length=ctx.max_length, threads=ctx.threads).logits(self.texts)
        given = ctx.calibration_labels
        self.labels = self.reference.argmax(-1) if given is None else np.asarray(given)[: len(self.texts)]
        self.ref_accuracy = float(np.mean(self.reference.argmax(-1) == self.labels))

    def logits(self, folder: Path, model=None) -> np.ndarray:
        classifier = OpenVinoClassifier(
            folder, max_length=self.ctx.max_length, threads=self.ctx.threads, precision=self.precision, model=model
        )
        return classifier.logits(self.texts)

    def score(self, folder: Path, model=None) -> dict:
        logits = self.logits(folder, model)
        accuracy = float(np.mean(logits.argmax(-1) == self.labels))
        return {
            "accuracy": accuracy,
            "accuracy_drop_points": 100.0 * (self.ref_accuracy - accuracy),
            "agreement": float(np.mean(logits.argmax(-1) == self.reference.argmax(-1))),
            "max_abs_logit_diff": float(np.max(np.abs(logits - self.reference))),
            "mean_abs_logit_diff": float(np.mean(np.abs(logits - self.reference))),
        }

    def passes(self, score: dict) -> bool:
        return (score["accuracy_drop_points"] <= self.fcfg.max_accuracy_drop
                and score["agreement"] >= self.fcfg.min_agreement)


def run_accuracy_control(fp32_model, feeds, options: Options, scorer: Scorer, tokenizer):
    """NNCF's accuracy-aware quantization; the metric is label agreement with the FP32 parent.

    ``max_drop`` = min(1 − min_agreement, max_accuracy_drop / 100): accuracy can fall by at most the share of
    labels that changed, so this one metric bounds both. SmoothQuant is off here: with it on, NNCF's reverted
    ops kept SmoothQuant's rescaled activations but got their original weights back (a sensitive tiny BERT went
    from 73% to 48% agreement as more ops were "restored"); with it off the same search reached 94%.
    """
    import nncf

    fcfg = options.fallback
    reference = scorer.reference
    items = [(encode(tokenizer, [text]), int(reference[i].argmax())) for i, text in enumerate(scorer.texts)]

    def agreement(compiled, data):
        port = compiled.output(0)
        agrees = [float(compiled(feed)[port].argmax(-1)[0] == label) for feed, label in data]
        return float(np.mean(agrees)), agrees  # per-item values: NNCF ranks ops on subsets of the items

    kwargs = _nncf_kwargs(options, feeds, (), smooth_quant=False)
    kwargs["advanced_quantization_parameters"] = kwargs.pop("advanced_parameters")
    return nncf.quantize_with_accuracy_control(
        fp32_model,
        nncf.Dataset(feeds),
        nncf.Dataset(items, lambda item: item[0]),
        agreement,
        max_drop=min(1.0 - fcfg.min_agreement, fcfg.max_accuracy_drop / 100.0),
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
            max_num_iterations=fcfg.accuracy_control_iterations
        ),
        **kwargs,
    )


def save_ir(model, folder: Path) -> None:
    """Write openvino_model.xml/.bin. No f16 compression: NNCF already stores the MatMul weights and the word
    embeddings (weight-only) in int8; what is left in f32 (LayerNorm, biases, scales) is small and stays exact."""
    import openvino as ov

    ov.save_model(model, str(Path(folder) / MODEL_XML), compress_to_fp16=False)


def pattern_ops(fp32_model, patterns: Sequence[str]) -> list[str]:
    """Weight MatMuls that ``patterns`` keep FP32 (NNCF's ``re.match``); a pattern matching no op is an error."""
    names = [op.get_friendly_name() for op in fp32_model.get_ordered_ops()]
    for pattern in patterns:
        try:
            if not any(re.match(pattern, name) for name in names):
                raise ConfigError(f"openvino-int8 options.ignored_patterns: {pattern!r} matches no node of the model")
        except re.error as exc:
            raise ConfigError(f"openvino-int8 options.ignored_patterns: {pattern!r} is not a regex ({exc})") from None
    weights = [n for ns in openvino_graph.layer_names(fp32_model).values() for n in ns]
    return sorted(n for n in weights if any(re.match(p, n) for p in patterns))


def rank_groups(
    fp32_model, feeds, options: Options, scorer: Scorer, folder: Path, base: Sequence[str]
) -> dict[str, float]:
    """Each group (layer, head) quantized alone, everything else FP32: its mean |Δlogit| vs the parent.

    Groups that ``base`` (options.ignored_patterns) already keeps FP32 are not ranked.
    """
    groups = {g: ns for g, ns in openvino_graph.layer_names(fp32_model).items() if not set(ns) <= set(base)}
    sensitivity = {}
    for name in groups:
        others = [n for group, ns in groups.items() if group != name for n in ns]
        model = quantize_model(fp32_model, feeds, options, others)
        sensitivity[name] = scorer.score(folder, model)["mean_abs_logit_diff"]
    logger.info(
        "sensitivity (mean |Δlogit| when quantized alone): %s", {k: round(v, 4) for k, v in sensitivity.items()}
    )
    return sensitivity


def candidates(fp32_model, feeds, options: Options, scorer: Scorer, folder: Path, record: dict, tokenizer):
    """Yield ``(model, fp32_ops, try)`` in order: full int8, then each fallback method's tries.

    The caller scores each try and stops iterating at the first that passes.
    """
    base = pattern_ops(fp32_model, options.ignored_patterns)
    yield quantize_model(fp32_model, feeds, options), base, {"method": "nncf.quantize", "reason": "full quantization"}
    if not options.fallback.enabled:
        return
    for method in options.fallback.methods:
        if method == "accuracy_control":
            model = run_accuracy_control(fp32_model, feeds, options, scorer, tokenizer)
            reverted = openvino_graph.unquantized_ops(model)
            yield model, reverted, {
                "method": "nncf.quantize_with_accuracy_control",
                "reason": "metric: label agreement with the parent; smooth_quant off",
                "reverted_ops": [n for n in reverted if n not in base],
            }
        else:
            groups = openvino_graph.layer_names(fp32_model)
            record["sensitivity"] = rank_groups(fp32_model, feeds, options, scorer, folder, base)
            ranked = sorted(record["sensitivity"], key=record["sensitivity"].get, reverse=True)
            for k in range(1, min(options.fallback.max_tries, len(ranked)) + 1):
                kept = [n for group in ranked[:k] for n in groups[group]]
                yield quantize_model(fp32_model, feeds, options, kept), sorted(set(base + kept)), {
                    "method": "ignored_scope",
                    "reason": f"the {k} most sensitive group(s) kept FP32",
                    "fp32_groups": ranked[:k],
                }


def _better(entry: dict, best: Optional[dict]) -> bool:
    if best is None:
        return True
    key = lambda e: (e["passed"], e["agreement"], -e["accuracy_drop_points"])  # noqa: E731
    return key(entry) > key(best)


def search(fp32_model, feeds, options: Options, scorer: Scorer, folder: Path, tokenizer) -> tuple:
    """Run the tries until one meets the bounds; returns (model, fp32_ops, record). Keeps the best if none does."""
    record = {
        "rows": len(scorer.texts),
        "labels": "calibration_labels" if scorer.ctx.calibration_labels is not None else "parent predictions",
        "bounds": {
            "max_accuracy_drop": options.fallback.max_accuracy_drop,
            "min_agreement": options.fallback.min_agreement,
        },
        "parent_accuracy": scorer.ref_accuracy,
        "tries": [],
    }
    best = None
    start = time.perf_counter()
    total = sum(len(ns) for ns in openvino_graph.layer_names(fp32_model).values())
    for model, fp32_ops, entry in candidates(fp32_model, feeds, options, scorer, folder, record, tokenizer):
        entry.update(scorer.score(folder, model))
        entry["kept_fp32_ops"] = len(fp32_ops)
        entry["passed"] = scorer.passes(entry) and len(fp32_ops) < total
        if len(fp32_ops) >= total:  # e.g. accuracy control reverted everything: not an int8 model at all
            entry["rejected"] = "no MatMul left in int8"
        entry["seconds"] = round(time.perf_counter() - start, 2)  # since the search began (quantize + score)
        record["tries"].append(entry)
        logger.info(
            "%s openvino-int8 try %d (%s): drop %.2f pts, agreement %.4f, max |Δlogit| %.3g, %d op(s) FP32",
            "✓" if entry["passed"] else "✗", len(record["tries"]), entry["method"], entry["accuracy_drop_points"],
            entry["agreement"], entry["max_abs_logit_diff"], len(fp32_ops),
        )
        if "rejected" not in entry and _better(entry, best and best[2]):
            best = (model, fp32_ops, entry)
        if entry["passed"]:
            break
    if best is None:
        raise GraphStructureError(
            "openvino-int8: no try left any MatMul in int8 (do options.ignored_patterns match them all?)"
        )
    record["passed"] = best[2]["passed"]
    record["chosen_try"] = record["tries"].index(best[2]) + 1
    record["triggered"] = not record["tries"][0]["passed"]
    if not record["passed"]:
        logger.warning(
            "openvino-int8 met no bound in %d tries; the best is kept and the gate decides", len(record["tries"])
        )
    return best[0], best[1], record


@contextlib.contextmanager
def nncf_log_level(level: int) -> Iterator[None]:
    """NNCF logs every quantizer it places at INFO to its own stdout handler, and draws a rich bar per pass
    (statistics, SmoothQuant, bias correction) that stays on the terminal; we log one line per try instead, and
    the run's stage line says when it is done. Below DEBUG its bars (rich's global console) are silenced too."""
    import rich

    nncf_logger = logging.getLogger("nncf")
    before, bars = nncf_logger.level, rich.get_console()
    was_quiet = bars.quiet
    nncf_logger.setLevel(level)
    bars.quiet = was_quiet or level > logging.DEBUG
    try:
        yield
    finally:
        nncf_logger.setLevel(before)
        bars.quiet = was_quiet


def versions() -> dict:
    import nncf
    import openvino as ov

    return {"openvino": ov.__version__, "nncf": nncf.__version__}


def run(parent: Artifact, options: Options, ctx: StepContext) -> Artifact:
    """Quantize the parent's FP32 ``model.onnx`` into an OpenVINO int8 IR in ``ctx.work_dir``."""
    import openvino as ov

    if parent.format != "onnx":
        raise ConfigError(f"openvino-int8 needs an ONNX FP32 parent; {parent.variant} is {parent.format}")
    work = Path(ctx.work_dir)
    copy_companions(parent.path, work)
    num_layers = model_dims(parent.path)[0]
    fp32_model = convert_onnx(parent.path / MODEL_NAME)
    parity = check_conversion(fp32_model, parent.path, ctx, options.parity_tolerance)
    feeds = calibration_feeds(ctx, options.calibration_rows)
    scorer = Scorer(parent.path, ctx, options.fallback, options.precision_hint)
    tokenizer = load_tokenizer(ctx.tokenizer_dir, ctx.max_length)
    with nncf_log_level(logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.WARNING):
        model, fp32_ops, record = search(fp32_model, feeds, options, scorer, work, tokenizer)

    save_ir(model, work)
    saved = OpenVinoClassifier(work, max_length=ctx.max_length, threads=ctx.threads, precision=options.precision_hint)
    ir = read_ov_model(ov.Core(), work)  # what was written, not what was in memory
    structure = openvino_graph.check_int8_structure(ir, num_layers, fp32_ops)
    kernels = openvino_graph.runtime_precisions(saved.compiled)
    if openvino_graph.int8_kernels(kernels) == 0:
        raise GraphStructureError(
            f"OpenVINO compiled the int8 IR but this CPU runs none of its MatMuls in int8 ({kernels}); "
            "it needs a CPU with AVX2 or newer"
        )
    meta = {
        "engine": "openvino",
        "versions": versions(),
        "openvino": {
            "versions": versions(),
            "tool": "nncf.quantize",
            "source": f"{parent.variant}/{MODEL_NAME} (ov.convert_model)",
            "nncf": nncf_settings(options, len(feeds)),
            "calibration_rows": len(feeds),
            "precision_hint": options.precision_hint,
            "inference_precision": saved.inference_precision,
            "weight_bytes": openvino_graph.weight_bytes(ir),
            "conversion_parity": {
                "reference": f"{parent.variant} (onnxruntime)",
                "tolerance": options.parity_tolerance,
                "cases": parity,
            },
            "accuracy_control": record,
            "structure": structure,
            "runtime_kernels": kernels,
            "op_counts": openvino_graph.op_counts(ir),
        },
    }
    return Artifact(work, ctx.name, meta=meta, format="openvino")
