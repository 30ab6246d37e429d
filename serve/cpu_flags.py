"""Does this CPU have the instruction set an int8 variant was tuned for? (Linux /proc/cpuinfo flags.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from structbert_lite.cpu import CPUINFO, read_cpu_flags

logger = logging.getLogger(__name__)

__all__ = ["CPUINFO", "check_cpu_flags", "read_cpu_flags"]


def check_cpu_flags(manifest: dict[str, Any], cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """Compare ``manifest["quantization"]["required_cpu_flags"]`` with this CPU; warn on what is missing.

    Returns ``{"isa", "required_flags", "missing_flags", "checked"}`` for /health. A manifest without a
    ``quantization`` block (fp32 variants) has nothing to check.
    """
    quant = manifest.get("quantization")
    if not isinstance(quant, dict):
        return {"isa": None, "required_flags": [], "missing_flags": [], "checked": False}
    isa = quant.get("isa")
    required = quant.get("required_cpu_flags") or []
    if not isinstance(required, list) or not all(isinstance(f, str) for f in required):
        logger.warning(
            "manifest quantization.required_cpu_flags is not a list of strings (%r); CPU check skipped", required
        )
        return {"isa": isa, "required_flags": [], "missing_flags": [], "checked": False}
    flags = read_cpu_flags(cpuinfo)
    if flags is None:
        logger.warning(
            "cannot read CPU flags from %s; cannot check that this CPU supports %s (%s)", cpuinfo, isa, required
        )
        return {"isa": isa, "required_flags": required, "missing_flags": [], "checked": False}
    missing = [flag for flag in required if flag.lower() not in flags]
    if missing:
        logger.warning(
            "this CPU lacks %s, which the variant was tuned for (isa %s): it still runs, but int8 may be slow or "
            "lose accuracy; use a variant quantized for this CPU (or the fp32 one)",
            ", ".join(missing), isa,
        )
    return {"isa": isa, "required_flags": required, "missing_flags": missing, "checked": True}
