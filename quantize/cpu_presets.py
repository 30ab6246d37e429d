"""CPU instruction-set presets for dynamic int8 (optimum's `AutoQuantizationConfig.avx2()` style).

Why the presets differ: without VNNI, onnxruntime's int8 GEMM multiplies u8 activations by s8 weights with
``vpmaddubsw``, whose 16-bit intermediate sums saturate; 7-bit weights (``reduce_range``) keep them in
range (onnxruntime docs, "Quantization on GPU/CPU: when to use reduce_range"; measured here on a
BERT-base-shaped model: max logit error 0.003 with reduce_range, 0.029 without). VNNI's ``vpdpbusd``
accumulates in 32 bits, so full-range weights are safe and more accurate there (on a StructBERT-base-shaped
model here: first-answer max |Δlogit| vs FP32 4.4e-3 without reduce_range, 1.3e-2 with it). Speed was the
same within run-to-run noise in `make bench` (ours-int8-host vs ours-int8-dynamic).

The other knobs of issue 13, measured on an AVX2-only EPYC (no VNNI) with a StructBERT-base-shaped model
(random weights), 2 threads, fresh process per contender, 4 rotated rounds — on a machine at load 7–15, so
only differences far beyond the ±50% round-to-round spread count. Max/mean |Δlogit| vs FP32 over 48 texts,
then median ms at 1×32 / 1×128 / 8×64:

| weights | session option | max / mean abs Δlogit | ms |
| --- | --- | --- | --- |
| s8, reduce_range (preset avx2) | — | 0.021 / 0.0057 | 279 / 910 / 2844 |
| s8, full range (preset avx512_vnni) | — | 0.028 / 0.0135 (saturates) | 359 / 1514 / 3680 |
| s8, full range | ``session.x64quantprecision=1`` (u8 weights at load: U8U8) | 0.018 / 0.0063 | 297 / 875 / 2957 |
| u8 (U8U8) | — | 0.018 / 0.0052 | 416 / 1407 / 3908 |
| s8, reduce_range | ``session.intra_op.allow_spinning=0`` | 0.021 / 0.0057 | 114 / 785 / 1999 |

So on AVX2 the presets stand: full range saturates, U8U8 and ``x64quantprecision`` buy accuracy (the
latter lets one full-range artifact run unsaturated everywhere) at a speed cost this machine cannot resolve.
The one win beyond the noise is a *session* setting, not a quantization one: with 2 threads on an
oversubscribed machine, not spinning was 2–3x faster at 1×32 in every round (92–144 ms vs 167–389 ms); on an
idle machine spinning usually helps latency. VNNI full-range vs reduce_range could not be timed here (no VNNI).
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from pathlib import Path

from structbert_lite.cpu import CPUINFO, isa_of, read_cpu_flags

logger = logging.getLogger(__name__)

# Instruction sets from weakest to strongest, with the /proc/cpuinfo flags that define each.
ISA_FLAGS = {
    "avx2": ("avx2", "fma"),
    "avx512": ("avx2", "avx512f", "avx512bw"),
    "avx512_vnni": ("avx2", "avx512f", "avx512bw", "avx512_vnni"),
    "avx_vnni": ("avx2", "avx_vnni"),
    "amx": ("avx512f", "amx_int8"),
}


@dataclasses.dataclass(frozen=True)
class QuantPreset:
    """Settings for `onnxruntime.quantization.quantize_dynamic` that do not saturate on ``isa``."""

    name: str
    isa: str
    weight_type: str  # "int8" | "uint8"
    reduce_range: bool
    per_channel: bool
    required_cpu_flags: tuple[str, ...]

    @classmethod
    def avx2(cls) -> "QuantPreset":
        return cls("avx2", "avx2", "int8", True, True, ISA_FLAGS["avx2"])

    @classmethod
    def avx512(cls) -> "QuantPreset":
        return cls("avx512", "avx512", "int8", True, True, ISA_FLAGS["avx512"])

    @classmethod
    def avx512_vnni(cls) -> "QuantPreset":
        # AVX-VNNI (Alder Lake and later) and AMX machines take the same settings. Without VNNI these
        # full-range weights saturate, so a loader on such a CPU is warned (required_cpu_flags).
        return cls("avx512_vnni", "avx512_vnni", "int8", False, True, ISA_FLAGS["avx512_vnni"])


PRESETS = {"avx2": QuantPreset.avx2, "avx512": QuantPreset.avx512, "avx512_vnni": QuantPreset.avx512_vnni}


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags of this machine (Linux); empty (→ AVX2 settings) where they cannot be read."""
    flags = read_cpu_flags(cpuinfo)
    if flags is None:
        logger.warning("cannot read CPU flags from %s (machine %s); assuming AVX2 only", cpuinfo, platform.machine())
        return frozenset()
    return frozenset(flags)


def detect_isa(flags: frozenset[str] | set[str]) -> str:
    """The strongest int8-relevant instruction set among ``flags``."""
    isa = isa_of(flags)  # AMX takes the VNNI preset; anything below AVX-512 the AVX2 one
    return {"amx": "avx512_vnni", "other": "avx2"}.get(isa, isa)


def choose_preset(name: str = "auto", flags: frozenset[str] | set[str] | None = None) -> QuantPreset:
    """The named preset, or for ``auto`` the one matching ``flags`` (default: this machine's)."""
    if name != "auto":
        if name not in PRESETS:
            raise ValueError(f"unknown quantization preset {name!r}; choose one of {['auto', *PRESETS]}")
        return PRESETS[name]()
    isa = detect_isa(cpu_flags() if flags is None else flags)
    preset = QuantPreset.avx512_vnni() if isa in ("avx512_vnni", "avx_vnni") else PRESETS[isa]()
    if isa == "avx_vnni":
        preset = dataclasses.replace(preset, isa="avx_vnni", required_cpu_flags=ISA_FLAGS["avx_vnni"])
    logger.info("CPU instruction set %s → preset %s (weights %s, reduce_range=%s)",
                isa, preset.name, preset.weight_type, preset.reduce_range)
    return preset
