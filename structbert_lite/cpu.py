"""This CPU's model name and feature flags (Linux /proc/cpuinfo): the one place that file is parsed.

Torch-free and import-light: quantize/ picks int8 presets with the flags, serve/ checks that a variant's
instruction set is present, and `measure.machine` describes the machine that measured a number.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Optional

CPUINFO = Path("/proc/cpuinfo")


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    model: Optional[str]  # "model name" of the first processor (None: not given, e.g. some arm64 kernels)
    flags: frozenset[str]  # feature flags, lower case


def read_cpuinfo(cpuinfo: Path = CPUINFO) -> Optional[CpuInfo]:
    """Model name and flags of the first processor listed, or None where the file cannot be read."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:  # x86 says "flags", arm64 "Features"
            flags = frozenset(flag.lower() for flag in value.split())
        if model is not None and flags is not None:
            break
    return CpuInfo(model, flags or frozenset())


def read_cpu_flags(cpuinfo: Path = CPUINFO) -> Optional[set[str]]:
    """The CPU's feature flags (lower case), or None where they cannot be read (not Linux, no /proc)."""
    info = read_cpuinfo(cpuinfo)
    return set(info.flags) if info is not None and info.flags else None


# Instruction sets that decide the int8/fp32 kernels, strongest first, with the flags that define each.
ISA_ORDER = (("amx", {"amx_int8"}), ("avx512_vnni", {"avx512_vnni"}), ("avx_vnni", {"avx_vnni"}),
             ("avx512", {"avx512f", "avx512bw"}), ("avx2", {"avx2"}))


def isa_of(flags: Optional[Iterable[str]]) -> str:
    """The strongest instruction set among ``flags``: amx, avx512_vnni, avx_vnni, avx512, avx2, other;
    "unknown" when the flags could not be read (None)."""
    if flags is None:
        return "unknown"
    flags = {f.lower() for f in flags}
    return next((isa for isa, needs in ISA_ORDER if needs <= flags), "other")
