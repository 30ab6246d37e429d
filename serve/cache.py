"""An LRU cache of recent predictions, with hit counts for /stats."""

from __future__ import annotations

import collections
import hashlib
from typing import Any, Optional


def text_key(text: str) -> bytes:
    """A 16-byte digest of ``text``: a cached body of up to --max-body-bytes would otherwise be kept per entry."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class PredictionCache:
    """Least-recently-used map text -> result. Used from the event loop thread only, so it needs no lock."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: collections.OrderedDict[bytes, dict[str, Any]] = collections.OrderedDict()

    def get(self, text: str) -> Optional[dict[str, Any]]:
        if self.capacity == 0:
            return None
        key = text_key(text)
        result = self._entries.get(key)
        if result is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return dict(result)

    def put(self, text: str, result: dict[str, Any]) -> None:
        if self.capacity == 0:
            return
        key = text_key(text)
        self._entries[key] = dict(result)
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
