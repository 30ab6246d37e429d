"""The rooms of DESIGN.md hold: who may import whom, and no function grows past what one reads at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.builders import imported_modules

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("convert", "quantize", "validate", "serve", "publish", "bench", "score", "train")
ORCHESTRATORS = ("cli.py", "pipeline.py")  # the thin modules that tie the stages together
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return sorted(p for folder in ROOMS + ("structbert_lite",) for p in (ROOT / folder).rglob("*.py"))


def room_of_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "structbert_lite" and len(parts) > 1 and parts[1] in ROOMS:
        return parts[1]
    return parts[0] if parts[0] in ROOMS else None


def broken_rules(path: Path, module: str) -> list[str]:
    room, target = path.relative_to(ROOT).parts[0], room_of_module(module)
    rules = [
        (room == "structbert_lite" and target is not None and path.name not in ORCHESTRATORS, "the core imports a stage"),
        (room == "quantize" and target == "convert", "quantize imports convert"),
        ({room, target} == {"validate", "bench"}, "validate and bench meet only through the core"),
        (room == "serve" and (target == "convert" or module.split(".")[0] == "torch"), "serve imports convert or torch"),
    ]
    return [why for broken, why in rules if broken]


def test_imports_keep_to_the_rooms():
    problems = [f"{path.relative_to(ROOT)}: {module} ({why})"
                for path in sources() for module in sorted(imported_modules(path)) for why in broken_rules(path, module)]
    assert not problems, "\n".join(problems)


def test_the_rules_catch_what_they_name():
    assert broken_rules(ROOT / "quantize" / "x.py", "structbert_lite.convert.export_onnx") == ["quantize imports convert"]
    assert broken_rules(ROOT / "structbert_lite" / "runtime.py", "structbert_lite.validate.stage")
    assert not broken_rules(ROOT / "structbert_lite" / "pipeline.py", "structbert_lite.validate.stage")
    assert broken_rules(ROOT / "bench" / "x.py", "structbert_lite.validate.speed")
    assert broken_rules(ROOT / "serve" / "x.py", "torch.nn")


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_a_screen(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(ROOT)}: split {', '.join(long)}"
