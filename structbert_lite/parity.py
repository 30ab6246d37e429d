"""Parity on real text: a candidate graph must give the reference's logits within a tolerance, or block.

Used by every step that rewrites a model (export, fusions, OpenVINO): one ✓/✗ line per (batch, length) case,
padded batches included, and a typed `ParityError` — where optimum's ``validate_model_outputs`` only warns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from structbert_lite.errors import ParityError
from structbert_lite.runtime import encode, load_tokenizer

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




def check_parity(
    reference: Callable[[dict], np.ndarray],
    candidate: Callable[[dict], np.ndarray],
    tokenizer_dir: Path,
    batch_sizes: Sequence[int],
    lengths: Sequence[int],
    tolerance: float,
    label: str,
    reference_name: str = "PyTorch FP32",
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
                {"batch": batch, "seq_len": int(feed["input_ids"].shape[1]), "padded": padded, "max_abs_diff": diff,
                 "passed": ok}
            )
            logger.info(
                "%s %s parity batch=%d seq=%d%s max|Δlogit|=%.2e (tol %.0e)",
                "✓" if ok else "✗", label, batch, feed["input_ids"].shape[1], " padded" if padded else "", diff,
                tolerance,
            )
    failed = [r for r in results if not r["passed"]]
    if failed:
        lines = "\n".join(
            f"  ✗ batch={r['batch']} seq={r['seq_len']}: max|Δlogit|={r['max_abs_diff']:.3e} > {tolerance:.0e}"
            for r in failed
        )
        raise ParityError(f"{label} does not match {reference_name} on {len(failed)}/{len(results)} cases:\n{lines}")
    return results
