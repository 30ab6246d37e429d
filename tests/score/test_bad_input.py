"""Bad inputs are one-line errors (exit 2) before any work starts; bad rows are kept, with an error column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from score_support import BAD_VALUES, make_texts, read_output, write_jsonl

from structbert_lite.cli import main


def _csv(tmp: Path, name: str = "in.csv", **columns) -> Path:
    pd.DataFrame(columns or {"text": ["好", "差"]}).to_csv(tmp / name, index=False)
    return tmp / name


def case_missing_column(tmp, variant):
    return ["--input", str(_csv(tmp, review=["好"]))], "has no column 'text' (columns: ['review'])"


def case_unreadable_parquet(tmp, variant):
    (tmp / "in.parquet").write_bytes(b"PAR1 this is not parquet")
    return ["--input", str(tmp / "in.parquet")], "cannot read"


def case_glob_matches_nothing(tmp, variant):
    return ["--input", str(tmp / "none-*.csv")], "matches no file"


def case_missing_file(tmp, variant):
    return ["--input", str(tmp / "absent.csv")], "does not exist"


def case_unsupported_input(tmp, variant):
    (tmp / "in.xlsx").write_text("x")
    return ["--input", str(tmp / "in.xlsx")], "unsupported extension(s) .xlsx"


def case_mixed_formats(tmp, variant):
    _csv(tmp, "a.csv")
    write_jsonl(tmp / "b.jsonl", [{"text": "好"}])
    return ["--input", str(tmp / "*")], "mixes formats (.csv, .jsonl)"


def case_bad_jsonl_line(tmp, variant):
    (tmp / "in.jsonl").write_text('{"text": "好"}\n{"text": \n', encoding="utf-8")
    return ["--input", str(tmp / "in.jsonl")], "in.jsonl:2 is not valid JSON"


def case_reserved_column(tmp, variant):
    return ["--input", str(_csv(tmp, text=["好"], label=["1"]))], "already has column(s) ['label']"


def case_unsupported_output(tmp, variant):
    return ["--input", str(_csv(tmp)), "--output", str(tmp / "out" / "scored.xlsx")], "unsupported extension '.xlsx'"


def case_output_is_input(tmp, variant):
    path = _csv(tmp)
    return ["--input", str(path), "--output", str(path)], "is (or holds) one of the input files"


def case_tampered_artifact(tmp, variant):
    copy = Path(shutil.copytree(variant, tmp / "copy"))
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    return ["--input", str(_csv(tmp)), "--artifact", str(copy)], "hash mismatch: model.onnx"


def case_not_a_variant(tmp, variant):
    return ["--input", str(_csv(tmp)), "--artifact", str(tmp)], "has no manifest.json"


def case_zero_workers(tmp, variant):
    return ["--input", str(_csv(tmp)), "--workers", "0"], "--workers must be a whole number >= 1"


def case_address_without_ray(tmp, variant):
    return ["--input", str(_csv(tmp)), "--ray-address", "127.0.0.1:1"], "--ray-address needs --engine ray"


def case_no_rows(tmp, variant):
    (tmp / "in.csv").write_text("text\n", encoding="utf-8")
    return ["--input", str(tmp / "in.csv")], "has no rows"


def case_ray_cluster_not_there(tmp, variant):
    pytest.importorskip("ray")
    args = ["--input", str(_csv(tmp)), "--engine", "ray", "--ray-address", "127.0.0.1:9"]
    return args, "no Ray cluster answers at 127.0.0.1:9"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_is_one_line_error_before_any_work(case, fp32_variant, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    args, expected = case(data, fp32_variant)
    output = tmp_path / "new" / "deeper" / "scored.parquet"
    defaults = {"--artifact": str(fp32_variant), "--output": str(output)}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    code = main(["score", "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("error: ") and expected in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "new").exists(), "an error left a folder behind"


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".tsv"])
def test_bad_rows_are_kept_in_place_with_an_error(suffix, fp32_variant, tmp_path, capsys):
    good = make_texts(6, seed=1)
    values = [good[0], *BAD_VALUES, good[1], 5, ["a", "list"], good[2], "\ud800x", good[3]]
    expected_errors = ["", *BAD_VALUES.values(), "", "text is a int, not a string", "text is a list, not a string", "",
                       "text holds an unpaired surrogate at character 0", ""]
    rows = [{"id": i, "text": v} for i, v in enumerate(values)] + [{"id": len(values)}]  # last row: no text key
    expected_errors.append("missing text")
    path = tmp_path / "in.jsonl"
    with open(path, "w", encoding="utf-8") as fh:  # ensure_ascii keeps the lone surrogate as a \ud800 escape
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    output = tmp_path / f"scored{suffix}"
    code = main(["score", "--quiet", "--artifact", str(fp32_variant), "--input", str(path), "--output", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{len(rows) - expected_errors.count('')} bad row(s)" in captured.out
    frame = read_output(output)
    assert [int(i) for i in frame["id"]] == list(range(len(rows)))  # every row, in input order
    assert [("" if pd.isna(e) else e) for e in frame["error"]] == expected_errors
    scored = [e == "" for e in expected_errors]
    labels = frame["label"].tolist()
    assert all((lab in ("Negative", "Positive")) == ok for lab, ok in zip(labels, scored, strict=True)), labels
    assert not list(tmp_path.glob(".*tmp*")) and not (tmp_path / f"scored{suffix}.parts").exists()
