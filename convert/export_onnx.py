"""PyTorch → ONNX FP32 export with a blocking parity check.

We use the TorchScript exporter (``dynamo=False``): with torch 2.13 the dynamo exporter emits attention in
a form onnxruntime's transformer optimizer does not fuse (no ``Attention``/``EmbedLayerNormalization``),
which silently costs most of the int8 speed later (DESIGN.md, "Exporter choice decides the fusions").
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from structbert_lite.artifact import Artifact
from structbert_lite.errors import ParityError
from structbert_lite.runtime import INPUT_NAMES, create_session, encode, load_tokenizer

logger = logging.getLogger(__name__)

# Real review-like sentences for the parity check; repeated into longer texts for the long cases.
PARITY_SENTENCES = (
    "这部电影太烂了，完全浪费时间",
    "质量很好，物流也快，下次还会再来买",
    "服务态度差，等了一个小时还没上菜",
    "书的内容很充实，作者写得深入浅出，推荐给大家",
    "屏幕有坏点，联系客服也没人理，非常失望",
    "性价比很高，宝贝和描述的一样，满意！",
    "房间很小而且隔音不好，晚上根本睡不着",
    "Great value, 包装精美，孩子很喜欢 😊",
)


def parity_texts(batch: int, min_chars: int) -> list[str]:
    """``batch`` texts of varied length (so the batch is padded), the longest at least ``min_chars``."""
    texts = []
    for i in range(batch):
        text, j = "", i
        target = min_chars if i == 0 else max(4, min_chars // (i + 1))
        while len(text) < target:
            text += PARITY_SENTENCES[j % len(PARITY_SENTENCES)]
            j += 1
        texts.append(text)
    return texts


def torch_logits(model, feed: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return out.logits.float().numpy()


def check_parity(
    reference: Callable[[dict], np.ndarray],
    candidate: Callable[[dict], np.ndarray],
    tokenizer_dir: Path,
    batch_sizes: Sequence[int],
    lengths: Sequence[int],
    tolerance: float,
    label: str,
) -> list[dict]:
    """Compare ``candidate`` with ``reference`` logits on real text; raise `ParityError` on any miss.

    Logs one ✓/✗ line per (batch, length) case; every case runs before the verdict so the log shows all.
    """
    results = []
    for length in lengths:
        tokenizer = load_tokenizer(tokenizer_dir, max_length=length)
        for batch in batch_sizes:
            feed = encode(tokenizer, parity_texts(batch, min_chars=length))  # (batch, seq<=length)
            ref, got = reference(feed), candidate(feed)
            if ref.shape != got.shape:
                diff, ok = float("inf"), False
            else:
                diff = float(np.max(np.abs(ref - got)))
                ok = diff <= tolerance and bool(np.all(ref.argmax(-1) == got.argmax(-1)))
            padded = bool((feed["attention_mask"] == 0).any())
            results.append(
                {"batch": batch, "seq_len": int(feed["input_ids"].shape[1]), "padded": padded, "max_abs_diff": diff, "passed": ok}
            )
            logger.info(
                "%s %s parity batch=%d seq=%d%s max|Δlogit|=%.2e (tol %.0e)",
                "✓" if ok else "✗", label, batch, feed["input_ids"].shape[1], " padded" if padded else "", diff, tolerance,
            )
    failed = [r for r in results if not r["passed"]]
    if failed:
        lines = "\n".join(
            f"  ✗ batch={r['batch']} seq={r['seq_len']}: max|Δlogit|={r['max_abs_diff']:.3e} > {tolerance:.0e}" for r in failed
        )
        raise ParityError(f"{label} does not match PyTorch FP32 on {len(failed)}/{len(results)} cases:\n{lines}")
    return results


def export_onnx(model, path: Path, opset: int) -> None:
    """TorchScript export with dynamic batch and sequence axes; inputs int64 (batch, seq), output logits."""
    import torch

    dummy = {
        "input_ids": torch.full((2, 16), 100, dtype=torch.long) % model.config.vocab_size,
        "attention_mask": torch.ones((2, 16), dtype=torch.long),
        "token_type_ids": torch.zeros((2, 16), dtype=torch.long),
    }
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about python control flow in transformers
        torch.onnx.export(
            model,
            (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def write_model_config(model, out_dir: Path) -> None:
    """config.json for the variant folder: the BERT config with the checkpoint's id2label kept."""
    config = model.config.to_dict()
    config["model_type"] = "bert"
    config["architectures"] = ["BertForSequenceClassification"]
    config["id2label"] = {str(k): v for k, v in model.config.id2label.items()}
    config["label2id"] = {v: int(k) for k, v in model.config.id2label.items()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def run(loaded, cfg, out_dir: Path, tokenizer_dir: Path) -> Artifact:
    """Export ``loaded.model`` into ``out_dir`` (model.onnx + config.json + tokenizer files), parity-checked.

    ``tokenizer_dir`` already holds the tokenizer files (see `tokenizer_files.write_tokenizer_files`); they are
    copied in. Raises `ParityError` (nothing else is written after the failure) on a mismatch.
    """
    import shutil

    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(tokenizer_dir) / name).is_file() and Path(tokenizer_dir) != out_dir:
            shutil.copyfile(Path(tokenizer_dir) / name, out_dir / name)
    model_path = out_dir / "model.onnx"
    export_onnx(loaded.model, model_path, cfg.export.opset)
    onnx.checker.check_model(str(model_path))
    write_model_config(loaded.model, out_dir)

    session = create_session(model_path, threads=cfg.validate.threads)
    parity = check_parity(
        reference=lambda feed: torch_logits(loaded.model, feed),
        candidate=lambda feed: session.run(["logits"], feed)[0],
        tokenizer_dir=out_dir,
        batch_sizes=cfg.export.parity_batch_sizes,
        lengths=cfg.export.parity_lengths,
        tolerance=cfg.export.parity_tolerance,
        label="fp32",
    )
    meta = {
        "variant": "fp32",
        "onnx_opset": cfg.export.opset,
        "exporter": "torch.onnx.export(dynamo=False)",
        "parity": {"reference": "pytorch-fp32", "tolerance": cfg.export.parity_tolerance, "cases": parity},
    }
    return Artifact(out_dir, "fp32", meta)
