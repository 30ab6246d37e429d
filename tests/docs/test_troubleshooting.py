"""Troubleshooting cannot fall behind the code: every exit status the `structbert-lite` CLI can return, every
user-facing error class (a subclass of `StructbertLiteError`, in any room) and every error raised as the bare
base class has its entry in docs/troubleshooting.md.

The lists are read from the source at test time (``ast``), not written down here, so a new exit code, a new
error class or a new unclassified error added without its Troubleshooting entry fails this test.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "troubleshooting.md"
BASE = "StructbertLiteError"
CLI_MODULE = "structbert_lite.cli"
PACKAGE_DIR = re.compile(r'"(structbert_lite[\w.]*)"\s*=\s*"([^"]+)"')  # pyproject [tool.setuptools] package-dir


def package_dirs() -> dict[str, Path]:
    """{package: folder} as pyproject.toml installs them (the rooms are top-level folders)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("package-dir"))
    return {name: REPO / folder for name, folder in PACKAGE_DIR.findall(line)}


@lru_cache(maxsize=1)
def modules() -> dict[str, ast.Module]:
    """{dotted module name: parsed source} of every module the installed package holds."""
    parsed = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            name = ".".join([package, *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))
            parsed.setdefault(name, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return parsed


def _int(node: ast.AST) -> int | None:
    is_int = isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool)
    return node.value if is_int else None


def exit_constants(trees: dict[str, ast.Module]) -> dict[str, int]:
    """Every ``EXIT_*`` name bound to an int (``EXIT_A, EXIT_B = 1, 2`` included), in any module."""
    found = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for name, value in zip(names, values, strict=False):  # `a, b = f()`: no literal to pair
                    if isinstance(name, ast.Name) and name.id.startswith("EXIT_") and _int(value) is not None:
                        found[name.id] = _int(value)
    return found


def _imports(name: str, tree: ast.Module) -> dict[str, tuple[str, str]]:
    """{local name: (module, name)} of every ``from X import y`` in the module, inside functions too."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = name.rsplit(".", node.level)[0] + "." if node.level else ""
            module = (base + (node.module or "")).rstrip(".")
            found.update({alias.asname or alias.name: (module, alias.name) for alias in node.names})
    return found


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def returned_codes(trees: dict[str, ast.Module], module: str, function: str, constants: dict[str, int],
                   seen: set) -> set[int]:
    """The int statuses ``module.function`` returns: literals in its ``return`` expressions (both sides of an
    ``x if c else y``), ``EXIT_*`` names (``constants``), and what the functions whose result it returns return,
    followed into the modules they are imported from."""
    if (module, function) in seen or module not in trees:
        return set()
    seen.add((module, function))
    tree = trees[module]
    local, imported = _functions(tree), _imports(module, tree)
    node = local.get(function)
    codes: set[int] = set()

    def value_codes(expr: ast.AST) -> None:
        if isinstance(expr, ast.IfExp):
            value_codes(expr.body)
            value_codes(expr.orelse)
        elif isinstance(expr, ast.BoolOp):
            for value in expr.values:
                value_codes(value)
        elif _int(expr) is not None:
            codes.add(_int(expr))
        elif isinstance(expr, ast.Name) and expr.id in constants:
            codes.add(constants[expr.id])
        elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            callee = expr.func.id
            if callee in local:
                codes.update(returned_codes(trees, module, callee, constants, seen))
            elif callee in imported:
                codes.update(returned_codes(trees, *imported[callee], constants, seen))

    for child in ast.walk(node) if node is not None else ():
        if isinstance(child, ast.Return) and child.value is not None:
            value_codes(child.value)
    return codes


def cli_entry_points(tree: ast.Module) -> list[str]:
    """``main`` and every sub-command function the parser dispatches to (``set_defaults(func=...)``)."""
    entries = ["main"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "set_defaults":
            entries += [k.value.id for k in node.keywords if k.arg == "func" and isinstance(k.value, ast.Name)]
    return entries


def system_exits(trees: dict[str, ast.Module]) -> set[int]:
    """Literal statuses of ``SystemExit(N)`` / ``sys.exit(N)`` anywhere in the package."""
    codes = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and _int(node.args[0]) is not None:
                func = node.func
                if (isinstance(func, ast.Name) and func.id == "SystemExit") or (
                        isinstance(func, ast.Attribute) and func.attr == "exit"
                        and isinstance(func.value, ast.Name) and func.value.id == "sys"):
                    codes.add(_int(node.args[0]))
    return codes


def cli_exit_codes(trees: dict[str, ast.Module]) -> set[int]:
    constants = exit_constants(trees)
    codes = set(constants.values()) | system_exits(trees)
    for entry in cli_entry_points(trees[CLI_MODULE]):
        codes |= returned_codes(trees, CLI_MODULE, entry, constants, set())
    return codes


def _base_name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def error_classes(trees: dict[str, ast.Module]) -> set[str]:
    """Names of every class that derives from `StructbertLiteError`, directly or through another one."""
    bases: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(_base_name(b) for b in node.bases)
    kinds = {BASE}
    while grown := {name for name, parents in bases.items() if parents & kinds} - kinds:
        kinds |= grown
    return kinds - {BASE}


def words(text: str) -> str:
    """Lower-case words joined by one space: a phrase matches the page whatever its backticks and line breaks."""
    return " ".join(re.findall(r"[\w'-]+", text)).lower()


def bare_raises(trees: dict[str, ast.Module]) -> dict[str, str]:
    """{module: the first words of the message} of every ``raise StructbertLiteError(...)``: an error with no
    kind of its own, which the kinds table cannot cover. The words are the first four of the message's first
    literal part of three words or more."""
    found = {}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            call = node.exc if isinstance(node, ast.Raise) else None
            if not (isinstance(call, ast.Call) and _base_name(call.func) == BASE and call.args):
                continue
            message = call.args[0]
            parts = message.values if isinstance(message, ast.JoinedStr) else [message]
            literals = [words(p.value) for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)]
            phrase = next((w for w in literals if len(w.split()) >= 3), " ".join(literals))
            found[f"{module}:{node.lineno}"] = " ".join(phrase.split()[:4])
    return found


def section(page: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", page, re.S | re.M)
    assert match, f"docs/troubleshooting.md has no '## {heading}' section"
    return match.group(1)


def undocumented(trees: dict[str, ast.Module], page: str) -> dict[str, list]:
    """What the code defines that the page has no entry for: exit codes without a row in the exit-code table,
    error classes without a table row that starts with their name, bare base-class errors not quoted."""
    codes_table = section(page, "Exit codes")
    rows = [line for line in page.splitlines() if line.startswith("|")]
    first_cells = [row.split("|")[1] for row in rows if row.count("|") > 2]
    page_words = words(page)
    return {
        "exit codes": sorted(c for c in cli_exit_codes(trees) if not re.search(rf"^\| {c} \|", codes_table, re.M)),
        "error classes": sorted(n for n in error_classes(trees) if not any(f"`{n}`" in cell for cell in first_cells)),
        "unclassified errors": sorted(f"{where}: '{phrase}'" for where, phrase in bare_raises(trees).items()
                                      if phrase not in page_words),
    }


def test_the_code_is_read_as_it_is():
    """The collectors see what is known to be there (else the test below would pass on an empty list)."""
    trees = modules()
    assert {0, 1, 2, 3, 4, 5, 130, 143} <= cli_exit_codes(trees)
    assert {"ConfigError", "GateError", "OutputBusyError", "PortInUseError", "ScoreError"} <= error_classes(trees)
    assert "structbert_lite.serve.server" in trees and len(bare_raises(trees)) >= 1


def test_every_exit_code_and_error_class_has_a_troubleshooting_entry():
    missing = undocumented(modules(), PAGE.read_text(encoding="utf-8"))
    assert not any(missing.values()), f"docs/troubleshooting.md has no entry for: {missing}"


NEW_CODE = '''
from structbert_lite.errors import ConfigError, StructbertLiteError
EXIT_NEW = 9
class DriftError(ConfigError):
    """a new kind, two levels below the base"""
class WorseDriftError(DriftError):
    pass
def helper(flag):
    return 11 if flag else EXIT_NEW
def run_new(args):
    if args:
        raise StructbertLiteError(f"the widget {args} melted down completely")
    return helper(args)
'''


def test_a_new_code_class_or_error_without_an_entry_fails():
    trees = dict(modules())
    trees["structbert_lite.newroom"] = ast.parse(NEW_CODE)
    cli = ast.parse("from structbert_lite.newroom import run_new\n"
                    "def build(sub):\n    sub.set_defaults(func=_cmd_new)\n"
                    "def _cmd_new(args):\n    return run_new(args)\n")
    trees[CLI_MODULE] = ast.Module(body=trees[CLI_MODULE].body + cli.body, type_ignores=[])
    missing = undocumented(trees, PAGE.read_text(encoding="utf-8"))
    assert missing["exit codes"] == [9, 11]
    assert missing["error classes"] == ["DriftError", "WorseDriftError"]
    assert missing["unclassified errors"] == ["structbert_lite.newroom:12: 'melted down completely'"]
