"""An LRU cache of recent predictions (each text's label probabilities, a tuple), with hit counts for /stats.

It can only be correct because a text's answer never depends on its batch neighbours (see engine.py): what is
cached for a text is what the model answers for it alone.
"""

from __future__ import annotations

import collections
import hashlib
from typing import Any, Optional


def text_key(text: str) -> bytes:
    """A 16-byte digest of ``text``: a cached body of up to --max-body-bytes would otherwise be kept per entry."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class PredictionCache:
    """Least-recently-used map text -> result (immutable). Used from the event loop thread only: no lock needed."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: collections.OrderedDict[bytes, tuple] = collections.OrderedDict()

    def get(self, text: str) -> Optional[tuple]:
        if self.capacity == 0:
            return None
        key = text_key(text)
        result = self._entries.get(key)
        if result is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return result

    def put(self, text: str, result: tuple) -> None:
        if self.capacity == 0:
            return
        key = text_key(text)
        self._entries[key] = tuple(result)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "capacity": self.capacity,
            "size": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / lookups, 4) if lookups else 0.0,
        }
