"""`structbert-lite verify DIR` and the SHA256SUMS file CI publishes next to the released folders.

``DIR`` is one variant folder (it holds ``manifest.json``) or a published set (``run-manifest.json``: the
variants and reports of one run). A folder is checked against its manifest (files present, sha256 equal, nothing
extra, the manifest's own digest); a set against its run manifest (every listed folder present, verified and
with the recorded manifest digest, every report's hash, no folder that is not listed, the run manifest's own
digest). A ``SHA256SUMS`` file in ``DIR`` is checked too. Exit status: 0 everything verifies, 1 otherwise.
Usable without the CLI: ``python -m structbert_lite.publish.verify DIR`` / ``... --write-sha256sums ROOT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from structbert_lite.artifact import (
    MANIFEST_NAME,
    content_digest,
    sha256_file,
    unsafe_entry,
    verify_folder,
)
from structbert_lite.publish.output_set import RUN_MANIFEST

logger = logging.getLogger(__name__)

SHA256SUMS = "SHA256SUMS"


def variant_folders(root: Path) -> list[Path]:
    """``root`` itself if it holds a manifest, else its non-hidden sub-folders that do."""
    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_NAME).is_file())


def _published_files(root: Path) -> list[Path]:
    """Regular files under ``root`` minus SHA256SUMS and hidden staging/backup entries (``.x.tmp-*``)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.relative_to(root).as_posix() != SHA256SUMS:
                files.append(path)
    return files


def write_sha256sums(root: Path) -> Path:
    """Write ``root/SHA256SUMS`` (``sha256sum`` format: ``<hex>  <relative path>``) for every published file."""
    root = Path(root)
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}\n" for p in _published_files(root)]
    path = root / SHA256SUMS
    tmp = root / f".{SHA256SUMS}.tmp-{os.getpid()}"
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _file_state(root: Path, rel, digest) -> str:
    """'refused' (not a plain name inside ``root``), 'symlink', 'missing', 'changed' (its sha256 is not
    ``digest``) or '' (present and as published). Nothing outside ``root`` is ever read."""
    if unsafe_entry(rel):
        return "refused"
    path = root / rel
    if any((root / Path(*Path(rel).parts[: n + 1])).is_symlink() for n in range(len(Path(rel).parts))):
        return "symlink"
    if not path.is_file():
        return "missing"
    return "changed" if sha256_file(path) != digest else ""


STATE_WORDS = {"refused": "is not a plain name inside the folder (refused)", "symlink": "is a symlink (refused)",
               "missing": "is missing", "changed": "was changed after publishing"}


def check_sha256sums(root: Path) -> list[str]:
    """Problems checking ``root/SHA256SUMS`` (what ``sha256sum -c`` would report)."""
    root = Path(root)
    problems = []
    for number, line in enumerate((root / SHA256SUMS).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            problems.append(f"{SHA256SUMS}:{number}: malformed line")
            continue
        rel = rel.lstrip("*")
        state = _file_state(root, rel, digest)
        if state:
            word = {"missing": "missing file", "changed": "hash mismatch"}.get(state, f"refused ({state})")
            problems.append(f"{SHA256SUMS}: {word}: {rel[:80]}")
    return problems


def _read_run_manifest(root: Path) -> tuple[dict, list[str]]:
    path = root / RUN_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [f"{RUN_MANIFEST} cannot be read ({type(exc).__name__}): the set is corrupt, re-publish it"]
    if not isinstance(manifest, dict) or not isinstance(manifest.get("variants"), dict):
        return {}, [f"{RUN_MANIFEST} is not a run manifest"]
    if manifest.get("manifest_digest") != content_digest(manifest):
        return manifest, [
            f"{RUN_MANIFEST} was edited after publishing (its content does not match its manifest_digest)"]
    return manifest, []


def verify_set(root: Path) -> list[str]:
    """Problems of a published set as a whole (the folders themselves are checked by `verify_folder`)."""
    manifest, problems = _read_run_manifest(root)
    listed = manifest.get("variants") or {}
    for name, record in sorted(listed.items(), key=lambda item: str(item[0])):
        digest = record.get("manifest_sha256") if isinstance(record, dict) else None
        state = "refused" if unsafe_entry(name) or "/" in name else _file_state(root, f"{name}/{MANIFEST_NAME}", digest)
        if state == "missing":
            problems.append(f"variant {name} is listed in {RUN_MANIFEST} but missing")
        elif state == "changed":
            problems.append(f"variant {name}: manifest.json differs from the one this set published")
        elif state:
            problems.append(f"variant {str(name)[:80]!r} listed in {RUN_MANIFEST} {STATE_WORDS[state]}")
    for folder in variant_folders(root):
        if folder.is_symlink():
            problems.append(f"variant folder {folder.name} is a symlink to {os.readlink(folder)} (refused)")
        if folder.name not in listed:
            problems.append(f"variant folder {folder.name} is not part of this set ({RUN_MANIFEST} does not list it)")
    for name, digest in sorted((manifest.get("reports") or {}).items(), key=lambda item: str(item[0])):
        state = _file_state(root, name, digest)
        if state:
            problems.append(f"report {str(name)[:80]} {STATE_WORDS[state]}")
    return problems


def verify_tree(root: Path) -> dict[str, list[str]]:
    """``{set, folder or SHA256SUMS path: problems}`` for ``root``: one variant folder or a published set."""
    root = Path(root)
    results: dict[str, list[str]] = {}
    if (root / MANIFEST_NAME).is_file():
        results[str(root)] = verify_folder(root)
    elif (root / RUN_MANIFEST).is_file():
        results[f"{root} (set)"] = verify_set(root)
        for folder in variant_folders(root):
            results[str(folder)] = verify_folder(folder)
    elif variant_folders(root):
        results[str(root)] = [
            f"{root} holds variant folders but no {RUN_MANIFEST}: not a complete published set (an interrupted "
            "or pre-set publish); re-run the pipeline"
        ]
    else:
        results[str(root)] = [
            f"{root} is not a directory" if not root.is_dir() else
            f"{root} holds no {MANIFEST_NAME} and no {RUN_MANIFEST} (point at a published set, e.g. "
            "artifacts/demo, or one of its variant folders, e.g. artifacts/demo/int8-dynamic)"
        ]
    if (root / SHA256SUMS).is_file():
        results[str(root / SHA256SUMS)] = check_sha256sums(root)
    return results


def verify_command(folder: Path, stream: TextIO | None = None) -> int:
    """Check ``folder`` (a variant folder or a parent of several); print one line per folder and per problem.

    Returns the process exit code: 0 when everything verifies, 1 otherwise.
    """
    stream = stream or sys.stdout
    results = verify_tree(Path(folder))
    for name, problems in results.items():
        stream.write(f"{'✓' if not problems else '✗'} {name}\n")
        for problem in problems:
            stream.write(f"    {problem}\n")
    bad = sum(1 for problems in results.values() if problems)
    stream.write(f"{len(results) - bad} ok, {bad} with problems\n")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m structbert_lite.publish.verify",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a variant folder or a folder holding several")
    parser.add_argument("--write-sha256sums", action="store_true", help="first write FOLDER/SHA256SUMS")
    args = parser.parse_args(argv)
    if args.write_sha256sums:
        write_sha256sums(args.folder)
    return verify_command(args.folder)


if __name__ == "__main__":
    sys.exit(main())
