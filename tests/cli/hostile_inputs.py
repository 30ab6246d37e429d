"""Hostile inputs through the real CLI: every one must end in ONE line and exit 2, in seconds, leaving nothing.

    .venv/bin/python -m tests.cli.hostile_inputs [--work /tmp/hostile] [--only NAME ...]

Builds a tiny self-labelled checkpoint, an eval file and a config, then breaks them one way at a time
(~40 cases: checkpoints, configs, eval files, sources) and runs ``structbert-lite run`` on each in a fresh
process. Prints one line per case (exit code, lines on stderr, seconds, the message) and the counts.
`tests/cli/test_hostile_inputs.py` runs a fast subset in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

from tests.builders import self_labels, write_eval_csv, write_tiny_checkpoint
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
        "vocab shorter than vocab_size": lambda d: (d / vocab).write_text("\n".join((d / vocab).read_text().splitlines()[:-10]) + "\n"),
        "vocab longer than vocab_size": lambda d: (d / vocab).write_text((d / vocab).read_text() + "extra1\nextra2\n"),
        "no vocab": lambda d: (d / vocab).unlink(),
        "labels not a sentiment": lambda d: _edit_json(d / "config.json", id2label={"0": "体育", "1": "财经"}, label2id={"体育": 0, "财经": 1}),
        "id2label and label2id disagree": lambda d: _edit_json(d / "config.json", label2id={"负面": 1, "正面": 0}),
        "swapped labels": lambda d: _edit_json(d / "config.json", id2label={"0": "正面", "1": "负面"}, label2id={"正面": 0, "负面": 1}),
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


def run_case(args: list[str], cwd: Path, env: dict | None = None) -> tuple[int, list[str], float]:
    started = time.monotonic()
    done = subprocess.run(CLI + args, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
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
    cases["hub that does not answer"] = (
        _args(Path("damo/nlp_structbert_sentiment-classification_chinese-base"), eval_csv, config, work / "out" / "hub"),
        {"MODELSCOPE_ENDPOINT": "http://127.0.0.1:9", "MODELSCOPE_CACHE": str(work / "ms-cache")},
    )
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cli.hostile_inputs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hostile-inputs"))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    cases = all_cases(args.work, *build(args.work))
    bad = []
    for name, (cli_args, env) in cases.items():
        if args.only and name not in args.only:
            continue
        code, lines, seconds = run_case(cli_args, args.work, env)
        out = Path(cli_args[cli_args.index("--out") + 1])
        leftovers = os.path.lexists(out) or (out.parent / f".{out.name}.runs").exists()
        ok = code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and not leftovers
        bad += [] if ok else [name]
        print(f"{'✓' if ok else '✗'} {name}: exit {code}, {len(lines)} line(s), {seconds:.1f} s"
              f"{', leftovers' if leftovers else ''}: {lines[-1][:160] if lines else ''}", flush=True)
    print(json.dumps({"cases": len(cases) if not args.only else len(args.only), "not one clean line": bad}, ensure_ascii=False))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
