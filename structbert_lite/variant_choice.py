"""Which variant of a published set runs when the user names the set (``artifacts/demo``), not a variant.

The set's ``report.json`` timed every variant on the machine that built it, and records beside each figure
the CPU and its instruction set (``metrics.measured_on``; older reports: the report's ``machine``). The rule:

1. Only variants that were published and run torch-free (``model.onnx`` or ``openvino_model.xml``).
2. Left out on this CPU: a variant whose manifest says it was tuned for flags this CPU lacks
   (``quantization.required_cpu_flags``: full-range int8 weights saturate without VNNI, so its accuracy here
   is not what was gated), and an OpenVINO int8 variant where this CPU has neither VNNI nor AMX. Measured
   (DESIGN.md): OpenVINO + NNCF int8 ran 1.0-2.5x onnxruntime's dynamic int8 on AMX and on AVX-512 VNNI
   CPUs, but on the AVX2-only EPYC it missed its gate (slower than its parent), so the shipped configs make it
   optional; without VNNI, onnxruntime's int8-dynamic (reduce_range weights) is the int8 to run.
3. Of the rest, the fastest at the report's speedup point. When this CPU's instruction set differs from the
   measuring one's, the choice says so: the ranking is then the measured one after rule 2, not a measurement
   of this CPU.

A user who names a variant folder gets that folder; nothing here runs then. CPU flags are injectable
(``flags=``) so tests never depend on the machine they run on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Optional

from structbert_lite.cpu import isa_of, read_cpu_flags

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MODEL_FILES = ("model.onnx", "openvino_model.xml")
VNNI_ISAS = ("amx", "avx512_vnni", "avx_vnni")  # int8 dot products that accumulate in 32 bits
FALLBACK_ORDER = ("int8-dynamic", "fp32")  # no speed figure at all: the variant `make serve` served before


@dataclasses.dataclass(frozen=True)
class Choice:
    """The variant picked from a set, and one sentence saying why."""

    folder: Path
    name: str
    reason: str


def set_variants(root: Path) -> list[str]:
    """Names of ``root``'s sub-folders that are variant folders (hold a manifest); [] when ``root`` is none."""
    root = Path(root)
    if not root.is_dir() or (root / MANIFEST).is_file():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    return {}


def _figures(report: dict[str, Any], names: list[str]) -> dict[str, tuple[float, str, str]]:
    """{name: (speedup, measuring isa, measuring cpu)} of the published, timed variants in ``names``."""
    machine = report.get("machine") if isinstance(report.get("machine"), dict) else {}
    figures = {}
    for entry in report.get("variants") or []:
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        speedup = metrics.get("speedup") if isinstance(metrics, dict) else None
        if entry.get("name") not in names or not entry.get("published") or not isinstance(speedup, (int, float)):
            continue
        measured_on = metrics.get("measured_on") if isinstance(metrics.get("measured_on"), dict) else {}
        isa = measured_on.get("isa") or isa_of(machine.get("cpu_flags"))
        cpu = measured_on.get("cpu") or machine.get("cpu") or "a CPU it did not record"
        figures[entry["name"]] = (float(speedup), str(isa), str(cpu))
    return figures


def why_not_here(manifest: dict[str, Any], flags: Optional[set[str]], isa: str) -> Optional[str]:
    """Why a variant should not be the default on a CPU with ``flags`` (rule 2), or None."""
    if flags is None:
        return None  # cannot tell: leave the measured ranking alone (the caller says the flags were unreadable)
    quant = manifest.get("quantization") if isinstance(manifest.get("quantization"), dict) else {}
    required = quant.get("required_cpu_flags") if isinstance(quant.get("required_cpu_flags"), list) else []
    missing = [f for f in required if isinstance(f, str) and f.lower() not in flags]
    if missing:
        return f"tuned for {quant.get('isa') or 'another CPU'}, this CPU lacks {', '.join(missing)}"
    if manifest.get("engine") == "openvino" and isa not in VNNI_ISAS:
        return f"OpenVINO int8 pays only with VNNI or AMX, this CPU is {isa}"
    return None


def choose_variant(root: Path, flags: Optional[Iterable[str]] = "this-cpu") -> Optional[Choice]:
    """The variant of the published set ``root`` to run on a CPU with ``flags`` (default: this machine's);
    None when ``root`` holds no variant folders."""
    root = Path(root)
    names = [n for n in set_variants(root) if any((root / n / f).is_file() for f in MODEL_FILES)]
    if not names:
        return None
    flags = read_cpu_flags() if flags == "this-cpu" else (None if flags is None else {f.lower() for f in flags})
    here = isa_of(flags)
    report = _read_json(root / "report.json")
    figures = _figures(report, names)
    left_out = {n: why for n in names if (why := why_not_here(_read_json(root / n / MANIFEST), flags, here))}
    timed = [n for n in figures if n not in left_out]
    if not timed:
        pick = next((n for n in FALLBACK_ORDER if n in names and n not in left_out),
                    next((n for n in names if n not in left_out), names[0]))
        return Choice(root / pick, pick, f"its report.json has no speed figure for a variant that suits this CPU "
                                         f"({here}); {_left_out(left_out)}".rstrip("; "))
    pick = max(timed, key=lambda n: figures[n][0])
    speedup, measured_isa, cpu = figures[pick]
    batch, tokens = (report.get("settings") or {}).get("speedup_point") or ("?", "?")
    reason = f"the fastest in its report.json at {batch}×{tokens} ({speedup:.2f}x PyTorch FP32), measured on {cpu} "
    if here == "unknown":
        reason += f"({measured_isa}); this CPU's flags could not be read, so the measured ranking stands"
    elif here == measured_isa:
        reason += f"({measured_isa}) like this CPU"
    else:
        reason += f"({measured_isa}), not on a CPU like this one ({here}): the measured ranking after the ISA rules"
        if here in VNNI_ISAS and measured_isa not in VNNI_ISAS and "openvino-int8" in names and pick != "openvino-int8":
            reason += " (with VNNI/AMX openvino-int8 ran 1.0-2.5x int8-dynamic where measured: try it)"
    return Choice(root / pick, pick, reason + (f"; {_left_out(left_out)}" if left_out else ""))


def _left_out(left_out: dict[str, str]) -> str:
    return "; ".join(f"{name} left out: {why}" for name, why in sorted(left_out.items()))


def resolve_variant(folder: Path, flags: Optional[Iterable[str]] = "this-cpu") -> Path:
    """``folder`` itself when it is a variant folder (or not a set: the caller's own checks speak); for a
    published set, the variant `choose_variant` picks, with one log line saying which and why."""
    folder = Path(folder)
    choice = choose_variant(folder, flags) if not (folder / MANIFEST).is_file() else None
    if choice is None:
        return folder
    logger.info("%s is a published set: using %s, %s (name a variant folder to choose another)",
                folder, choice.name, choice.reason)
    return choice.folder
