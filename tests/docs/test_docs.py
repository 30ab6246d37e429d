"""Docs that cannot lie: every `structbert-lite …` line shown in README.md and docs/ parses with the CLI's own
parser, every `make X` is a Makefile target, the Python examples run on the tiny model, and the configs page is
the one generated from the schema."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from structbert_lite.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
COMMAND = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?structbert-lite(\s.*)$")
MAKE = re.compile(r"(?:^|[\s;&|(`])make\s+((?:[A-Z_]+=\S*\s+)*)([a-z][\w-]*)")
NOT_RUN = "<!-- not run:"  # put right above a ```python block that cannot run here (e.g. ModelScope's own pipeline)
PLACEHOLDER_NUMBER = "1"


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, offset of the fence) of every fenced block."""
    return [(m.group(1), m.group(2), m.start()) for m in FENCE.finditer(text)]


def shell_lines(body: str) -> list[str]:
    """Logical lines of a shell block: ``\\``-continuations joined, synopsis lines that continue with an
    indented ``[--flag`` joined to the line above."""
    lines: list[str] = []
    pending = ""
    for raw in body.splitlines():
        if pending:
            pending += " " + raw.strip()
        elif lines and re.match(r"^\s+\[?--", raw):
            lines[-1] += " " + raw.strip()
            continue
        else:
            pending = raw
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1]
            continue
        lines.append(pending)
        pending = ""
    return lines + ([pending] if pending else [])


def command_lines(text: str, inline: bool = False) -> list[str]:
    """Every `structbert-lite …` command shown in ``text``'s shell blocks (``inline``: in its inline code,
    where a command may be an excerpt such as `structbert-lite run --model DIR`)."""
    if inline:
        spans = INLINE.findall(FENCE.sub("", text))
        return [m.group(1).strip() for m in (re.match(r"^(?:\S*/)?structbert-lite(\s.*)$", s) for s in spans) if m]
    commands = []
    for language, body, _ in fenced_blocks(text):
        if language in ("python", "yaml", "json"):
            continue
        for line in shell_lines(body):
            match = COMMAND.search(re.split(r"\s#\s|\s#$", line)[0])  # comments dropped
            if match and match.group(1).strip():
                commands.append(match.group(1).strip())
    return commands


def synopsis_to_argv(command: str) -> list[str]:
    """Shell words of a shown command; a synopsis (``[--flag VALUE]``, ``a|b``) reads as every part given,
    ``PLACEHOLDER`` values and ``$VAR``s kept as strings (numbers where the option takes one)."""
    command = re.split(r"\s*(?:&&|\|\||;|\|\s)\s*", command)[0]
    words = shlex.split(command.replace("[", " ").replace("]", " "), posix=True)
    words = [w.split("|")[0] if w.startswith("--") or re.fullmatch(r"[\w.+-]+(\|[\w.+-]+)+", w) else w
             for w in words]
    return [w for i, w in enumerate(words)  # `...` stands for a value after an option, else for "and so on"
            if w not in ("...", "…") or (i and words[i - 1].startswith("--") and "=" not in words[i - 1])]


def _numeric_options(parser) -> set[str]:
    numeric = set()
    for action in parser._actions:  # argparse has no public API for this
        if action.type in (int, float):
            numeric.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                numeric |= _numeric_options(sub)
    return numeric


def parse_shown(command: str) -> None:
    """Parse one shown command with the CLI's parser; SystemExit (argparse's refusal) becomes an AssertionError."""
    parser = build_parser()
    numeric = _numeric_options(parser)
    argv = synopsis_to_argv(command)
    argv = [PLACEHOLDER_NUMBER if i and argv[i - 1] in numeric and not re.fullmatch(r"[\d.]+", w) else w
            for i, w in enumerate(argv)]
    if argv and argv[0] in ("--help", "-h", "--version"):
        return
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`structbert-lite {command}` does not parse: argv {argv}") from exc


def check_inline(command: str) -> None:
    """An inline excerpt: its sub-command exists and each of its ``--flags`` is one of that sub-command's."""
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    words = synopsis_to_argv(command)
    if words[0].startswith("-"):
        unknown = [w for w in words if w.startswith("-") and w.split("=")[0] not in parser._option_string_actions]
    else:
        assert words[0] in subparsers.choices, f"`structbert-lite {command}`: no sub-command {words[0]!r}"
        sub, rest = subparsers.choices[words[0]], words[1:]
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]  # `config show`
        if nested and rest and rest[0] in nested[0].choices:
            sub, rest = nested[0].choices[rest[0]], rest[1:]
        unknown = [w for w in rest if w.startswith("--") and w.split("=")[0] not in sub._option_string_actions]
    assert not unknown, f"`structbert-lite {command}`: unknown flag(s) {unknown}"


def all_commands(inline: bool = False) -> list[tuple[str, str]]:
    return [(page.relative_to(REPO).as_posix(), c)
            for page in PAGES for c in command_lines(page.read_text("utf-8"), inline)]


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([a-z][\w-]*)\s*:(?!=)", text, re.M)}


def test_the_docs_show_commands_at_all():
    pages = {page for page, _ in all_commands()}
    assert {"README.md", "docs/serving.md", "docs/scoring.md"} <= pages


@pytest.mark.parametrize("page,command", all_commands())
def test_every_shown_command_parses_with_the_cli_parser(page, command):
    parse_shown(command)


@pytest.mark.parametrize("page,command", all_commands(inline=True))
def test_every_command_excerpt_names_real_flags(page, command):
    check_inline(command)


def test_an_invented_flag_fails_the_check():
    text = "```bash\nstructbert-lite serve --artifact artifacts/demo --invented-flag 3\n```\n"
    (command,) = command_lines(text)
    with pytest.raises(AssertionError, match="does not parse"):
        parse_shown(command)
    with pytest.raises(AssertionError, match="unknown flag"):
        check_inline(command_lines("`structbert-lite run --confg x.yaml`", inline=True)[0])


def test_continuations_synopses_and_placeholders_read_as_one_command():
    text = ("```bash\nstructbert-lite score --engine ray --ray-address HEAD_IP:6379 \\\n"
            "    --artifact DIR --input 'x/*.parquet' --output out.parquet\n```\n"
            "```\nstructbert-lite score --artifact DIR --input PATH|GLOB --output PATH [--engine local|ray]\n"
            "                      [--workers N] [--threads T]\n```\n")
    commands = command_lines(text)
    assert len(commands) == 2 and "--output" in commands[0] and "--threads" in commands[1]
    for command in commands:
        parse_shown(command)


def test_every_make_target_named_exists():
    targets = make_targets()
    named = set()
    for page in PAGES:
        text = page.read_text("utf-8")
        code = [body for _, body, _ in fenced_blocks(text)] + INLINE.findall(FENCE.sub("", text))
        named |= {(page.name, m.group(2)) for chunk in code for m in MAKE.finditer(chunk)}
    missing = sorted((p, t) for p, t in named if t not in targets)
    assert not missing, f"make targets named in the docs but not in the Makefile: {missing}"
    assert {t for _, t in named} >= {"demo", "test", "convert", "docs"}


def python_examples() -> list[tuple[str, str]]:
    examples = []
    for page in PAGES:
        text = page.read_text("utf-8")
        for language, body, offset in fenced_blocks(text):
            before = text[:offset].rstrip().splitlines()[-1:] or [""]
            if language == "python" and not before[0].startswith(NOT_RUN):
                examples.append((page.relative_to(REPO).as_posix(), body))
    return examples


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    """A working folder whose artifacts/demo/<variant> folders are tiny exported classifiers with manifests."""
    from structbert_lite.artifact import write_manifest
    from tests.builders import TINY_VOCAB, export_variant, tiny_model

    root = tmp_path_factory.mktemp("docs-examples")
    for variant in ("int8-dynamic", "fp32"):
        folder = export_variant(tiny_model(seed=3), root / "artifacts" / "demo" / variant, TINY_VOCAB)
        (folder / "README.md").write_text(f"# demo {variant}\n", encoding="utf-8")  # a published folder has its card
        write_manifest(folder, {"name": "demo", "variant": variant, "config": {"model": {"max_length": 128}}})
    return root


def test_the_docs_have_python_examples_that_run():
    assert any("structbert_lite.load" in body for _, body in python_examples())


@pytest.mark.parametrize("page,code", python_examples())
def test_python_examples_run_on_the_tiny_model(page, code, demo_set, monkeypatch):
    monkeypatch.chdir(demo_set)
    exec(compile(code, f"{page} example", "exec"), {"__name__": "docs_example"})  # noqa: S102 - runs the docs' own examples


def test_the_configs_page_is_the_generated_one():
    from structbert_lite.docs_config import PAGE, render

    assert PAGE.read_text(encoding="utf-8") == render(), "run `python -m structbert_lite.docs_config` (make docs)"


def test_the_readme_fits_on_two_screens():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 150
