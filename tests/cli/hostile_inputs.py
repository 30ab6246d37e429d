"""Hostile inputs through the real CLI: every one must end in ONE line and exit 2, in seconds, leaving nothing.

    .venv/bin/python -m tests.cli.hostile_inputs [--work /tmp/hostile] [--only NAME ...]

Builds a tiny self-labelled checkpoint, an eval file and a config, then breaks them one way at a time
(~40 cases: checkpoints, configs, eval files, sources) and runs ``structbert-lite run`` on each in a fresh
process. Then the cases of issue 23 (`issue23_cases`, ~20), on a set published by the real publishing code
(`publish.output_set.OutputSet`) around a tiny exported variant: ``run --out`` inside that set, its run folder
or a variant folder (the set must be left byte for byte as it was); variant folders whose manifest lists
``../x`` or an absolute path, or whose files are symlinks (`verify` exits 1 naming the problem and never prints
the digest of a file outside the folder; ``score`` refuses in one line); ``--threads 10000`` for ``score`` and
``serve``; an eval path that is a folder, a FIFO or ``/dev/zero``, an eval line over 1 MiB (the line must say
what the path is); ``serve`` of a folder whose labels are not a sentiment pair. Prints one line per case (exit
code, lines on stderr, seconds, the message) and the counts. `tests/cli/test_hostile_inputs.py` runs a fast
subset in the suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import yaml

from tests.builders import free_port, self_labels, write_eval_csv, write_tiny_checkpoint
from tests.cli.test_run_cli import TEXTS, tiny_config

CLI = [sys.executable, "-m", "structbert_lite.cli"]
Case = Callable[[Path, Path, Path, Path], list[str]]  # (work, checkpoint copy, eval csv, config) -> CLI args


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _args(ck: Path, ev: Path, cfg: Path, out: Path, **over) -> list[str]:
    parts = {"--config": str(cfg), "--model": str(ck), "--eval": str(ev), "--out": str(out), **over}
    return ["run", *[x for kv in parts.items() for x in kv], "--quiet"]


class Pickled:
    def __reduce__(self):  # code that would run on unpickling
        return (os.system, ("echo pwned",))


def checkpoint_cases() -> dict[str, Callable[[Path], None]]:
    """Each breaks a copy of the checkpoint folder in place."""
    weights = "pytorch_model.bin"
    vocab = "vocab.txt"
    return {
        "truncated weights": lambda d: (d / weights).write_bytes((d / weights).read_bytes()[:4096]),
        "empty weights": lambda d: (d / weights).write_bytes(b""),
        "garbage weights": lambda d: (d / weights).write_bytes(b"\x00garbage" * 500),
        "safetensors that is a zip": lambda d: (d / weights).rename(d / "model.safetensors"),
        "garbage safetensors": lambda d: ((d / weights).unlink(), (d / "model.safetensors").write_bytes(b"{}" * 50)),
        "pickled code": lambda d: (d / weights).write_bytes(pickle.dumps({"x": Pickled()})),
        "no weights": lambda d: (d / weights).unlink(),
        "no config.json": lambda d: (d / "config.json").unlink(),
        "config.json is a list": lambda d: (d / "config.json").write_text("[1, 2]"),
        "config.json not JSON": lambda d: (d / "config.json").write_text("{oops"),
        "hidden_size is a string": lambda d: _edit_json(d / "config.json", hidden_size="128"),
        "heads do not divide hidden": lambda d: _edit_json(d / "config.json", num_attention_heads=3),
        "layers do not match the weights": lambda d: _edit_json(d / "config.json", num_hidden_layers=3),
        "vocab shorter than vocab_size": lambda d: (d / vocab).write_text(
            "\n".join((d / vocab).read_text().splitlines()[:-10]) + "\n"),
        "vocab longer than vocab_size": lambda d: (d / vocab).write_text((d / vocab).read_text() + "extra1\nextra2\n"),
        "no vocab": lambda d: (d / vocab).unlink(),
        "labels not a sentiment": lambda d: _edit_json(d / "config.json", id2label={"0": "体育", "1": "财经"},
                                                       label2id={"体育": 0, "财经": 1}),
        "id2label and label2id disagree": lambda d: _edit_json(d / "config.json", label2id={"负面": 1, "正面": 0}),
        "swapped labels": lambda d: _edit_json(d / "config.json", id2label={"0": "正面", "1": "负面"},
                                               label2id={"正面": 0, "负面": 1}),
    }


def config_cases() -> dict[str, Callable[[dict], object]]:
    """Each edits the tiny config (a dict) in place; "duplicate key" is written as text."""
    return {
        "unknown key": lambda c: c.update(modle={}),
        "duplicate key": lambda c: None,
        "threads: true": lambda c: c["validate"].update(threads=True),
        "seq_lengths [0]": lambda c: c["validate"]["latency"].update(seq_lengths=[0]),
        "seq_lengths [100000]": lambda c: c["validate"]["latency"].update(seq_lengths=[100000]),
        "parity_lengths [100000]": lambda c: c["variants"][0].setdefault("options", {}).update(parity_lengths=[100000]),
        "unknown step": lambda c: c["variants"][1].update(step="int4-magic"),
        "pre-steps layout": lambda c: c.update(quantize={"preset": "avx2"}),
        "config is a list": lambda c: (c.clear(), c.update(_list=True)),
    }


def eval_cases() -> dict[str, Callable[[Path], Path]]:
    """Each writes a broken eval file and returns it."""
    return {
        "eval missing column": lambda w: _write(w / "e1.csv", "review,label\n好,1\n"),
        "eval empty": lambda w: _write(w / "e2.csv", ""),
        "eval binary": lambda w: _write_bytes(w / "e3.csv", bytes(range(256)) * 20),
        "eval bad jsonl": lambda w: _write(w / "e4.jsonl", '{"text": "好", "label": 1}\n{oops\n'),
        "eval unknown labels": lambda w: _write(w / "e5.csv", "text,label\n好,good\n差,bad\n"),
        "eval wrong extension": lambda w: _write(w / "e6.txt", "text,label\n"),
        "eval missing file": lambda w: w / "nothing.csv",
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


STAGE_MARKS = ("✓ ", "✗ ")


def run_case(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600,
             stdout: bool = False) -> tuple[Optional[int], list[str], float]:
    """(exit status, None when it ran past ``timeout`` and was killed; the non-blank lines of stderr, with
    ``stdout`` those of stdout before them; seconds)."""
    started = time.monotonic()
    try:
        done = subprocess.run(CLI + args, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})},
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, [line for line in err.splitlines() if line.strip()], time.monotonic() - started
    text = (done.stdout + "\n" if stdout else "") + done.stderr
    # `run`'s stage lines (✓/✗ per stage, docs/getting-started.md) are its progress display, not error lines: an
    # error inside a stage (the hub source) ends that stage's line with ✗ and is then the one `error:` line
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(STAGE_MARKS)]
    return done.returncode, lines, time.monotonic() - started


def build(work: Path) -> tuple[Path, Path, Path]:
    checkpoint = write_tiny_checkpoint(work / "good-ckpt", layout="modelscope", center_on=TEXTS)
    eval_csv = write_eval_csv(work / "eval.csv", TEXTS, self_labels(checkpoint, TEXTS, max_length=64))
    return checkpoint, eval_csv, Path(tiny_config(work, {"max_size_mb": 5}))


def all_cases(work: Path, checkpoint: Path, eval_csv: Path, config: Path) -> dict[str, tuple[list[str], dict]]:
    """name -> (CLI args, extra environment); every case gets its own copies and output folder."""
    cases = {}
    for name, breaker in checkpoint_cases().items():
        copy = Path(shutil.copytree(checkpoint, work / "cases" / name.replace(" ", "-")))
        breaker(copy)
        cases[name] = (_args(copy, eval_csv, config, work / "out" / copy.name), {})
    for name, edit in config_cases().items():
        path = work / "cases" / f"{name.replace(' ', '-').replace(':', '')}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        edit(data)
        text = "- a\n- list\n" if data.get("_list") else yaml.safe_dump(data, allow_unicode=True)
        path.write_text(text + ("name: again\n" if name == "duplicate key" else ""), encoding="utf-8")
        cases[name] = (_args(checkpoint, eval_csv, path, work / "out" / path.stem), {})
    binary = work / "cases" / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    cases["binary config"] = (_args(checkpoint, eval_csv, binary, work / "out" / "binary"), {})
    for name, make in eval_cases().items():
        cases[name] = (_args(checkpoint, make(work), config, work / "out" / name.replace(" ", "-")), {})
    (work / "mymodels").mkdir(exist_ok=True)
    cases["mistyped local path"] = (_args(Path("mymodels/checkpoint"), eval_csv, config, work / "out" / "typo"), {})
    hub_id = Path("damo/nlp_structbert_sentiment-classification_chinese-base")
    cases["hub that does not answer"] = (
        _args(hub_id, eval_csv, config, work / "out" / "hub"),
        {"MODELSCOPE_ENDPOINT": "http://127.0.0.1:9", "MODELSCOPE_CACHE": str(work / "ms-cache")},
    )
    return cases


@dataclasses.dataclass
class Expect:
    """What an issue-23 case must end in besides "nothing changed under ``guard``"."""

    says: str = ""  # a phrase the one error line must hold (what the path is, the set it would damage...)
    guard: Optional[Path] = None  # a folder that must be left exactly as it was (paths, sizes, link targets)
    verify: bool = False  # `verify`'s contract instead of one line and exit 2: exit 1 with ``says`` in its report
    secret: str = ""  # text that must appear nowhere in the output (the digest of a file outside the folder)


def tree_state(root: Path) -> dict:
    """Every path under ``root`` (hidden ones too): a symlink as its target, a file as its size and sha256."""
    from structbert_lite.artifact import sha256_file

    state = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            state[rel] = (path.stat().st_size, sha256_file(path))
        else:
            state[rel] = "dir"
    return state


def publish_tiny_set(out: Path, variant: Path) -> Path:
    """A set published by the real publishing code (OutputSet: run folder, run manifest, symlink) around one
    variant folder; `structbert-lite verify OUT` must say it is clean."""
    from structbert_lite.publish.output_set import OutputSet
    from structbert_lite.publish.publisher import write_run_manifest

    with OutputSet(out, keep_runs=2) as output:
        shutil.copytree(variant, output.run_dir / "fp32", symlinks=True)
        report = {"name": "tiny", "passed": True, "variants": [{"name": "fp32", "published": True}]}
        write_run_manifest(output, report, {})
        output.switch()
    return out


def _resign(folder: Path, **entries: str) -> None:
    """Add ``entries`` to a folder's manifest and sign it again: only the entries lie, the digest is right."""
    from structbert_lite.artifact import content_digest

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"].update(entries)
    manifest["manifest_digest"] = content_digest(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def tampered_variants(work: Path, variant: Path) -> dict[str, tuple[Path, str]]:
    """Copies of ``variant`` broken one way each -> (folder, digest of the outside file it points at, or "")."""
    from structbert_lite.artifact import sha256_file, write_manifest

    made = {}
    root = work / "tampered"
    for name in ("../x entry", "absolute entry", "symlinked file", "symlinked directory", "labels not a pair"):
        folder = Path(shutil.copytree(variant, root / name.replace(" ", "-").replace("/", "") / "fp32"))
        secret = folder.parent / "secret.txt"
        secret.write_text("not yours to hash\n", encoding="utf-8")
        digest = ""
        if name in ("../x entry", "absolute entry"):
            digest = sha256_file(secret)
            _resign(folder, **{"../secret.txt" if name.startswith("..") else str(secret): digest})
        elif name == "symlinked file":
            copy = folder.parent / "tokenizer-copy.json"
            shutil.copyfile(folder / "tokenizer.json", copy)
            (folder / "tokenizer.json").unlink()
            (folder / "tokenizer.json").symlink_to(copy)  # identical bytes: only the link is wrong
        elif name == "symlinked directory":
            (folder.parent / "outside").mkdir()
            (folder / "extra").symlink_to(folder.parent / "outside", target_is_directory=True)
        else:
            _edit_json(folder / "config.json", id2label={"0": "体育", "1": "财经"}, label2id={"体育": 0, "财经": 1})
            write_manifest(folder, {"name": "tiny", "variant": "fp32"})  # a folder that verifies: only labels are off
        made[name] = (folder, digest)
    return made


def out_cases(published: Path, ck: Path, ev: Path, cfg: Path) -> dict[str, tuple[list[str], dict, Expect]]:
    """run --out inside a published set: refused in one line naming the set; the set's folder unchanged."""
    from structbert_lite.publish.output_set import runs_root

    guard = published.parent
    targets = {
        "out is the set's run folder": Path(os.path.realpath(published)),
        "out inside a variant folder": published / "fp32" / "sub",
        "out nested in the set": published / "newset",
        "out is a variant folder": published / "fp32",
        "out in the set's runs folder": runs_root(published) / "other",
    }
    return {name: (_args(ck, ev, cfg, out), {}, Expect(says="would damage", guard=guard))
            for name, out in targets.items()}


def issue23_cases(work: Path, checkpoint: Path, eval_csv: Path,
                  config: Path) -> dict[str, tuple[list[str], dict, Expect]]:
    """name -> (CLI args, extra environment, what it must end in): the hostile inputs of issue 23."""
    from tests.score.score_support import build_variant

    variant = build_variant(work / "variant" / "fp32")
    published = publish_tiny_set(work / "area" / "tiny", variant)
    code, lines, _ = run_case(["verify", str(published)], work, stdout=True)
    assert code == 0, lines  # the cases below break a set that verifies
    cases = out_cases(published, checkpoint, eval_csv, config)
    output = work / "out" / "scored.parquet"
    score = ["score", "--quiet", "--input", str(eval_csv), "--output", str(output)]
    for name, (folder, digest) in tampered_variants(work, variant).items():
        if name == "labels not a pair":
            port = str(free_port())
            cases["serve: labels not a sentiment pair"] = (
                ["serve", "--artifact", str(folder), "--port", port], {}, Expect(says="negative"))
            continue
        says = "symlink" if "symlink" in name else "refused"
        cases[f"verify: {name}"] = (["verify", str(folder)], {}, Expect(says=says, verify=True, secret=digest[:12],
                                                                          guard=folder.parent))
        cases[f"score: {name}"] = (score + ["--artifact", str(folder)], {},
                                   Expect(says=says, secret=digest[:12], guard=folder.parent))
    cases["score --threads 10000"] = (score + ["--artifact", str(variant), "--threads", "10000"], {},
                                      Expect(says="--threads"))
    cases["serve --threads 10000"] = (["serve", "--artifact", str(variant), "--threads", "10000", "--port",
                                       str(free_port())], {}, Expect(says="--threads"))
    (work / "eval-folder.csv").mkdir(exist_ok=True)
    fifo = work / "eval-fifo.jsonl"
    if not fifo.exists():
        os.mkfifo(fifo)
    long_line = _write(work / "eval-long-line.jsonl", json.dumps({"text": "好" * (1 << 19), "label": 1}) + "\n")
    for name, path, says in (("eval is a folder", work / "eval-folder.csv", "is a folder"),
                             ("eval is a FIFO", fifo, "named pipe"), ("eval is /dev/zero", Path("/dev/zero"), "device"),
                             ("eval line over 1 MiB", long_line, "line 1 is over")):
        out = work / "out" / name.replace(" ", "-").replace("/", "")
        cases[name] = (_args(checkpoint, path, config, out), {}, Expect(says=says))
    return cases


def _leftovers(args: list[str], expect: Expect, before: Optional[dict], work: Path) -> bool:
    if expect.guard is not None:
        return tree_state(expect.guard) != before
    if "--out" in args:
        out = Path(args[args.index("--out") + 1])
        return os.path.lexists(out) or (out.parent / f".{out.name}.runs").exists()
    return (work / "out" / "scored.parquet").exists()


def _passed(code: Optional[int], lines: list[str], expect: Expect) -> bool:
    text = "\n".join(lines)
    if expect.secret and expect.secret in text:
        return False
    if expect.verify:
        return code == 1 and expect.says in text
    return code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expect.says in lines[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cli.hostile_inputs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hostile-inputs"))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    fixtures = build(args.work)
    cases = {name: (cli_args, env, Expect()) for name, (cli_args, env) in all_cases(args.work, *fixtures).items()}
    cases.update(issue23_cases(args.work, *fixtures))
    bad = []
    for name, (cli_args, env, expect) in cases.items():
        if args.only and name not in args.only:
            continue
        before = tree_state(expect.guard) if expect.guard is not None else None
        code, lines, seconds = run_case(cli_args, args.work, env, timeout=120, stdout=expect.verify)
        leftovers = _leftovers(cli_args, expect, before, args.work)
        ok = _passed(code, lines, expect) and not leftovers
        bad += [] if ok else [name]
        status = "timed out" if code is None else f"exit {code}"
        shown = next((line for line in lines if expect.says and expect.says in line), lines[-1] if lines else "")
        print(f"{'✓' if ok else '✗'} {name}: {status}, {len(lines)} line(s), {seconds:.1f} s"
              f"{', leftovers' if leftovers else ''}: {shown[:160]}", flush=True)
    counted = len(cases) if not args.only else len(args.only)
    print(json.dumps({"cases": counted, "not one clean line": bad}, ensure_ascii=False))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
