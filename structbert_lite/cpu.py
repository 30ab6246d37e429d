"""This CPU's feature flags (Linux /proc/cpuinfo). Torch-free: quantize/ picks presets with it, serve/ checks
that a variant's instruction set is present."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

CPUINFO = Path("/proc/cpuinfo")


def read_cpu_flags(cpuinfo: Path = CPUINFO) -> Optional[set[str]]:
    """The CPU's feature flags (lower case), or None where they cannot be read (not Linux, no /proc)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 says "flags", arm64 "Features"
            return {flag.lower() for flag in value.split()}
    return None
