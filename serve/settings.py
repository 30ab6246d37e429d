"""Serving settings: one dataclass, validated on construction (optimum-style ``ensure_..._or_raise`` helpers)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from structbert_lite.constants import thread_count_problem
from structbert_lite.errors import ConfigError
from structbert_lite.runtime import TRUNCATIONS

OVERLONG_MODES = ("truncate", "reject")
DEFAULT_MAX_LENGTH = 128  # same default as the pipeline's `model.max_length` (structbert_lite/config.py)


def ensure_positive_or_raise(
    name: str, value: Optional[int], allow_none: bool = False, allow_zero: bool = False
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"serve setting {name} must be an integer, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"serve setting {name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")


def ensure_choice_or_raise(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"serve setting {name} must be one of {', '.join(choices)}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """How the stub serves one variant folder."""

    host: str = "127.0.0.1"  # interface to bind; loopback by default (the stub has no authentication)
    port: int = 5000  # TCP port (DESIGN.md contract)
    threads: Optional[int] = None  # onnxruntime intra-op threads (None: onnxruntime's default, all cores)
    max_length: Optional[int] = None  # truncation length in tokens incl. [CLS]/[SEP] (None: manifest or 128)
    overlong: str = "truncate"  # a text over max_length tokens: "truncate" it or "reject" it with a 422
    truncation: Optional[str] = None  # "head" or "head+tail" (None: the manifest's config.model.truncation, else head)
    max_batch: int = 64  # most texts accepted by one /predict_batch call
    cache_size: int = 1024  # LRU cache entries of recent texts (0: no cache)
    max_body_bytes: int = 1 << 20  # request bodies larger than this get a 413
    max_inflight_body_bytes: int = 16 << 20  # all requests' bodies held at once; a request past this gets a 503
    batch_wait_ms: float = 0.0  # extra wait for more concurrent requests to batch (0: batch only what is queued)
    max_micro_batch: int = 32  # most queued texts run through the model in one call
    read_timeout_s: float = 10.0  # request headers, then its body, each not complete this long: 408 (slow-loris)

    def __post_init__(self):
        ensure_positive_or_raise("port", self.port, allow_zero=True)
        if self.port > 65535:
            raise ConfigError(f"serve setting port must be <= 65535, got {self.port}")
        ensure_positive_or_raise("threads", self.threads, allow_none=True)
        problem = None if self.threads is None else thread_count_problem("serve setting threads (--threads)", self.threads)
        if problem:
            raise ConfigError(problem)
        ensure_positive_or_raise("max_length", self.max_length, allow_none=True)
        if self.max_length is not None and self.max_length < 3:
            raise ConfigError(f"serve setting max_length must be >= 3 ([CLS], one token, [SEP]), got {self.max_length}")
        ensure_choice_or_raise("overlong", self.overlong, OVERLONG_MODES)
        if self.truncation is not None:
            ensure_choice_or_raise("truncation", self.truncation, TRUNCATIONS)
        ensure_positive_or_raise("max_batch", self.max_batch)
        ensure_positive_or_raise("cache_size", self.cache_size, allow_zero=True)
        ensure_positive_or_raise("max_body_bytes", self.max_body_bytes)
        ensure_positive_or_raise("max_inflight_body_bytes", self.max_inflight_body_bytes)
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ConfigError(
                f"serve setting max_inflight_body_bytes ({self.max_inflight_body_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}): else no maximum-size request could ever be answered"
            )
        ensure_positive_or_raise("max_micro_batch", self.max_micro_batch)
        if not isinstance(self.batch_wait_ms, (int, float)) or not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"serve setting batch_wait_ms must be between 0 and 1000, got {self.batch_wait_ms!r}")
        if (isinstance(self.read_timeout_s, bool) or not isinstance(self.read_timeout_s, (int, float))
                or not 0 < self.read_timeout_s <= 3600):
            raise ConfigError(
                f"serve setting read_timeout_s must be > 0 and <= 3600 seconds, got {self.read_timeout_s!r}"
            )
