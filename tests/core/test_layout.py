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
        (room == "structbert_lite" and target is not None and path.name not in ORCHESTRATORS,
         "the core imports a stage"),
        (room == "quantize" and target == "convert", "quantize imports convert"),
        ({room, target} == {"validate", "bench"}, "validate and bench meet only through the core"),
        (room == "serve" and (target == "convert" or module.split(".")[0] == "torch"),
         "serve imports convert or torch"),
    ]
    return [why for broken, why in rules if broken]


def test_imports_keep_to_the_rooms():
    problems = [f"{path.relative_to(ROOT)}: {module} ({why})"
                for path in sources() for module in sorted(imported_modules(path))
                for why in broken_rules(path, module)]
    assert not problems, "\n".join(problems)


def test_the_rules_catch_what_they_name():
    assert broken_rules(ROOT / "quantize" / "x.py", "structbert_lite.convert.export_onnx") == [
        "quantize imports convert"]
    assert broken_rules(ROOT / "structbert_lite" / "runtime.py", "structbert_lite.validate.stage")
    assert not broken_rules(ROOT / "structbert_lite" / "pipeline.py", "structbert_lite.validate.stage")
    assert broken_rules(ROOT / "bench" / "x.py", "structbert_lite.validate.speed")
    assert broken_rules(ROOT / "serve" / "x.py", "torch.nn")


def room_graph(imports: dict[Path, set[str]]) -> dict[str, set[str]]:
    """room -> the other rooms its files import (imports inside functions count: they run too)."""
    graph: dict[str, set[str]] = {}
    for path, modules in imports.items():
        room = path.relative_to(ROOT).parts[0]
        targets = {room_of_module(m) for m in modules} - {None, room}
        if room in ROOMS and targets:
            graph.setdefault(room, set()).update(targets)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``[]`` when it has none (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = [] if start in done else visit(start, [start])
        if cycle:
            return cycle
    return []


def test_test_files_have_unique_names():
    """The test folders have no __init__.py, so pytest imports each test file by its base name: two files of one
    name in two folders pass alone and stop `make test` at collection ("import file mismatch")."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}


def test_no_import_cycle_between_rooms():
    graph = room_graph({path: imported_modules(path) for path in sources()})
    cycle = find_cycle(graph)
    assert not cycle, f"rooms import each other in a cycle: {' -> '.join(cycle)}; move the code to one room or the core"


def test_the_cycle_check_catches_a_planted_cycle():
    def files(**room_imports: list[str]) -> dict[Path, set[str]]:
        return {ROOT / room / "x.py": set(modules) for room, modules in room_imports.items()}

    clean = room_graph(files(train=["structbert_lite.convert.checkpoint", "structbert_lite.errors"],
                             bench=["structbert_lite.train.demo_model"], convert=["torch"]))
    assert clean == {"train": {"convert"}, "bench": {"train"}} and find_cycle(clean) == []
    planted = room_graph(files(convert=["structbert_lite.train.settings"], train=["structbert_lite.convert.sources"]))
    assert find_cycle(planted) == ["convert", "train", "convert"]
    three = {"score": {"bench"}, "bench": {"train"}, "train": {"score"}}
    assert find_cycle(three) == ["bench", "train", "score", "bench"]
    assert find_cycle({"serve": {"serve"}}) == ["serve", "serve"]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_a_screen(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(ROOT)}: split {', '.join(long)}"
