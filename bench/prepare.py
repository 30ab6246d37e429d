"""Build, once per shape, the model, its tokenizer and "ours": the config's variants, through the pipeline's steps.

    work/<shape>/
      checkpoint/   ModelScope-layout checkpoint (random weights of the shape, or --model)   ← the steps' source
      pytorch/      save_pretrained() of the same model + tokenizer files                   ← PyTorch peers
      tokenizer/    tokenizer.json, vocab.txt, …                                            ← every contender
      ours/<variant>/  `pipeline.build_variants` on the config's variants                   ← ours-*, and the FP32
                                                                                              export the peers use
Ours are built exactly as `make convert` builds them (same steps, same options), except that with random
weights the int8 step's accuracy fallback is off (there is no accuracy to protect) and variants made by
distillation are left out (the student is measured as its own shape). Nothing here times anything.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from structbert_lite.artifact import Artifact
from structbert_lite.bench import workload
from structbert_lite.bench.settings import VOCAB_SIZE, BenchSettings
from structbert_lite.constants import DEFAULT_ID2LABEL

logger = logging.getLogger(__name__)

HF_LOADER = "transformers:BertForSequenceClassification.from_pretrained"
# Step options that only make sense on trained weights; switched off when the weights are random.
RANDOM_WEIGHT_OPTIONS = {
    "ort-dynamic-int8": {"fallback": {"enabled": False}},
    "openvino-int8": {"fallback": {"enabled": False}},
}
LEFT_OUT_STEPS = ("distill",)  # the student is measured as its own shape, not distilled in the benchmark


@dataclasses.dataclass
class Prepared:
    """One shape's shared inputs: where its files are, and our variants built from it."""

    shape_name: str
    shape: dict  # BertConfig fields that decide the FLOPs
    vocab_size: int
    weights: str  # "random weights (...)" or the checkpoint folder
    checkpoint_dir: Path
    torch_dir: Path
    tokenizer_dir: Path
    work: Path
    reviews: list  # review texts (throughput, calibration), the same for every contender
    cfg: object  # structbert_lite.config.PipelineConfig whose variants are ours
    cfg_origin: str
    ours: dict = dataclasses.field(default_factory=dict)  # variant -> Artifact
    ours_failures: dict = dataclasses.field(default_factory=dict)  # variant -> why it was not built
    params: int = 0

    def fp32_export(self) -> Path:
        """Our FP32 ONNX export (the input of the ONNX/OpenVINO peers): the config's first export step."""
        for variant in self.cfg.variants:
            if variant.step == "export" and variant.name in self.ours:
                return self.ours[variant.name].model_path
        raise FileNotFoundError(f"the config {self.cfg_origin} built no FP32 export (step 'export'): "
                                f"{self.ours_failures}")


def build_random_model(shape: dict, seed: int, vocab_size: int = VOCAB_SIZE):
    """A `BertForSequenceClassification` of ``shape`` with seeded random weights (speed only)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, max_position_embeddings=512, num_labels=2, id2label=dict(DEFAULT_ID2LABEL),
        label2id={v: k for k, v in DEFAULT_ID2LABEL.items()}, **shape,
    )
    return BertForSequenceClassification(config).eval()


def write_checkpoint(settings: BenchSettings, shape_name: str, work: Path) -> tuple[Path, str]:
    """(ModelScope-layout checkpoint folder, description of its weights) for one shape."""
    from structbert_lite.convert.checkpoint import save_checkpoint

    if settings.model_dir and shape_name == "base":
        return Path(settings.model_dir), f"checkpoint {Path(settings.model_dir).resolve()}"
    if settings.model_dir:  # the student on the real model's vocabulary
        vocab = [line for line in (Path(settings.model_dir) / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    else:
        vocab = workload.build_vocab(VOCAB_SIZE)
    model = build_random_model(settings.shape_configs[shape_name], settings.seed, len(vocab))
    folder = save_checkpoint(model, vocab, work / "checkpoint")
    return folder, f"random weights (torch.manual_seed({settings.seed})), vocabulary of {len(vocab)}"


def pipeline_config(settings: BenchSettings, random_weights: bool):
    """(PipelineConfig, origin): the config's variants (distillation left out), the bench's threads and length."""
    import yaml

    from structbert_lite.config import parse_config
    from structbert_lite.steps import resolve_step

    path = Path(settings.config_path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline config {path} does not exist (pass --config FILE)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    kept, dropped = [], set()
    for variant in data.get("variants") or []:
        if variant.get("step") in LEFT_OUT_STEPS or variant.get("parent", "source") in dropped:
            dropped.add(variant["name"])
            continue
        override = RANDOM_WEIGHT_OPTIONS.get(variant.get("step")) if random_weights else None
        if override and set(override) <= set(resolve_step(variant["step"]).Options.model_fields):
            variant = {**variant, "options": {**(variant.get("options") or {}), **override}}
        kept.append(variant)
    data.update(variants=kept, name="bench")
    data.setdefault("model", {})["max_length"] = settings.max_length
    data.setdefault("validate", {})["threads"] = settings.threads
    return parse_config(data, str(path)), str(path)


def build_ours(prep: Prepared, threads: int) -> None:
    """Run the config's variants through the pipeline's own step runner into ``prep.work / "ours"``."""
    from structbert_lite.convert.checkpoint import load_classifier
    from structbert_lite.pipeline import build_variants
    from structbert_lite.steps import SOURCE, StepContext

    loaded = load_classifier(prep.checkpoint_dir)
    source = Artifact(prep.checkpoint_dir, SOURCE, {"source": {"kind": "bench", "id": prep.weights}},
                      format="checkpoint")
    ctx = StepContext(
        name="", work_dir=prep.work / "ours", threads=threads, max_length=prep.cfg.model.max_length,
        tokenizer_dir=prep.tokenizer_dir, source=loaded, calibration_texts=list(prep.reviews), quiet=True,
    )
    prep.ours, prep.ours_failures = build_variants(prep.cfg, source, ctx)


def prepare_shape(settings: BenchSettings, shape_name: str, work: Path, reviews: list[str]) -> Prepared:
    """Checkpoint, save_pretrained copy, tokenizer files and ours, for one shape."""
    from structbert_lite.convert.checkpoint import load_classifier
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files

    work.mkdir(parents=True, exist_ok=True)
    checkpoint_dir, weights = write_checkpoint(settings, shape_name, work)
    tokenizer_dir, torch_dir = work / "tokenizer", work / "pytorch"
    write_tokenizer_files(checkpoint_dir / "vocab.txt", tokenizer_dir, settings.max_length)
    model = load_classifier(checkpoint_dir).model
    if torch_dir.exists():
        shutil.rmtree(torch_dir)
    model.save_pretrained(torch_dir)  # what a PyTorch user loads with from_pretrained
    for item in tokenizer_dir.iterdir():
        shutil.copyfile(item, torch_dir / item.name)
    config = model.config
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    shape = {k: getattr(config, k) for k in fields}
    random_weights = weights.startswith("random")
    cfg, origin = pipeline_config(settings, random_weights)
    prep = Prepared(shape_name, shape, config.vocab_size, weights, checkpoint_dir, torch_dir, tokenizer_dir, work,
                    list(reviews), cfg, origin, params=int(sum(p.numel() for p in model.parameters())))
    del model
    build_ours(prep, settings.threads)
    return prep


def describe_error(exc: BaseException) -> str:
    """One line for results.json; a missing package names the extra that installs it."""
    if isinstance(exc, ImportError) and not (exc.name or "").startswith("structbert_lite"):
        return f"not installed: {exc} (pip install -e '.[bench]')"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]

