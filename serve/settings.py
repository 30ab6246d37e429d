"""Serving settings: one dataclass, validated on construction (optimum-style ``ensure_..._or_raise`` helpers)."""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any, Callable, Optional

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


def flag_fields() -> list[dataclasses.Field]:
    """The settings that are ``serve`` flags, in the order ``--help`` lists them."""
    return [f for f in dataclasses.fields(ServeSettings) if "help" in f.metadata]


def _flag(default: Any, help: str, type: Optional[Callable] = None, choices: Optional[tuple] = None) -> Any:
    """A setting that is also a ``serve`` flag (``--max-batch`` for ``max_batch``): its help, type and choices."""
    return dataclasses.field(default=default, metadata={
        "help": help, "type": type or builtins.type(default), "choices": choices})


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """How the stub serves one variant folder. Every field with a help text is a flag of ``structbert-lite serve``
    (`serve.server.add_serve_arguments` generates them, `settings_from_args` reads them back)."""

    host: str = _flag("127.0.0.1", "interface to bind (default: %(default)s, loopback only)")
    port: int = _flag(5000, "TCP port (default: %(default)s)")  # DESIGN.md contract
    threads: Optional[int] = _flag(None, "onnxruntime intra-op threads (default: onnxruntime's, all cores)", int)
    # in tokens, [CLS]/[SEP] included
    max_length: Optional[int] = _flag(None, "truncation length in tokens (default: the manifest's, else 128)", int)
    overlong: str = _flag("truncate", "what to do with a text over --max-length tokens (default: %(default)s)",
                          choices=OVERLONG_MODES)
    truncation: Optional[str] = _flag(
        None, "how to truncate: keep the first tokens, or the first and the last ones "
        "(default: the manifest's config.model.truncation, else head)", str, TRUNCATIONS)
    max_batch: int = _flag(64, "most texts per /predict_batch request (default: %(default)s)")
    cache_size: int = _flag(1024, "LRU cache entries of recent texts, 0 to disable (default: %(default)s)")
    max_body_bytes: int = _flag(1 << 20, "largest request body accepted (default: %(default)s)")  # else a 413
    max_inflight_body_bytes: int = _flag(
        16 << 20, "request-body bytes held at once over all requests; past this a request gets a 503 "
        "with Retry-After (default: %(default)s)")
    batch_wait_ms: float = _flag(0.0, "wait this long for concurrent requests to batch together (default: %(default)s)")
    max_micro_batch: int = 32  # most queued texts run through the model in one call (no flag)
    read_timeout_s: float = _flag(
        10.0, "request headers, then the body, must each arrive within this many seconds, else a 408 "
        "and the connection is closed (default: %(default)s)")  # slow-loris

    def __post_init__(self):
        ensure_positive_or_raise("port", self.port, allow_zero=True)
        if self.port > 65535:
            raise ConfigError(f"serve setting port must be <= 65535, got {self.port}")
        ensure_positive_or_raise("threads", self.threads, allow_none=True)
        problem = thread_count_problem("serve setting threads (--threads)", self.threads) if self.threads else None
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
                f"serve setting max_inflight_body_bytes ({self.max_inflight_body_bytes}) must be at least "
                f"max_body_bytes ({self.max_body_bytes}): else no maximum-size request could ever be answered"
            )
        ensure_positive_or_raise("max_micro_batch", self.max_micro_batch)
        if not isinstance(self.batch_wait_ms, (int, float)) or not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"serve setting batch_wait_ms must be between 0 and 1000, got {self.batch_wait_ms!r}")
        if (isinstance(self.read_timeout_s, bool) or not isinstance(self.read_timeout_s, (int, float))
                or not 0 < self.read_timeout_s <= 3600):
            raise ConfigError(
                f"serve setting read_timeout_s must be > 0 and <= 3600 seconds, got {self.read_timeout_s!r}"
            )
