"""ONNX export parity: batch sizes, lengths, padding, unseen lengths; and a mismatch that must block."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from structbert_lite.convert import export_onnx
from structbert_lite.convert.checkpoint import load_classifier
from structbert_lite.errors import ParityError
from structbert_lite.parity import check_parity, parity_texts
from structbert_lite.runtime import create_session, encode, load_tokenizer
from tests.builders import run_steps


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    loaded = load_classifier(tiny_checkpoint)
    options = {"parity_batch_sizes": [1, 3, 8], "parity_lengths": [5, 32, 128]}
    return loaded, run_steps(work, loaded, [("fp32", "export", options)])["fp32"]


def test_folder_contents_and_parity_record(exported):
    _, artifact = exported
    names = {p.name for p in artifact.path.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json"} <= names
    cases = artifact.meta["export"]["parity"]["cases"]
    assert len(cases) == 9 and all(c["passed"] for c in cases)
    assert any(c["padded"] for c in cases), "the parity check must include a padded batch"
    assert max(c["max_abs_diff"] for c in cases) < 1e-4


def test_graph_io_contract(exported):
    _, artifact = exported
    session = create_session(artifact.model_path)
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(isinstance(d, str) for shape in inputs.values() for d in shape), "batch and sequence axes are dynamic"
    assert [o.name for o in session.get_outputs()] == ["logits"]


@pytest.mark.parametrize("batch, length", [(1, 3), (2, 17), (5, 77), (1, 200)])
def test_untraced_lengths_match_pytorch(exported, batch, length):
    """The export traced (2, 16); other shapes, padded batches included, must still match PyTorch."""
    loaded, artifact = exported
    feed = encode(load_tokenizer(artifact.path, length), parity_texts(batch, length))
    got = create_session(artifact.model_path).run(["logits"], feed)[0]
    np.testing.assert_allclose(got, export_onnx.torch_logits(loaded.model, feed), atol=1e-4)


def test_parity_mismatch_blocks_with_a_line_per_case(exported, caplog):
    loaded, artifact = exported
    caplog.set_level(logging.INFO, logger="structbert_lite.parity")
    with pytest.raises(ParityError, match=r"does not match PyTorch FP32 on 2/2 cases") as info:
        check_parity(
            reference=lambda feed: export_onnx.torch_logits(loaded.model, feed),
            candidate=lambda feed: export_onnx.torch_logits(loaded.model, feed) + 0.01,
            tokenizer_dir=artifact.path,
            batch_sizes=[1, 2],
            lengths=[16],
            tolerance=1e-4,
            label="broken",
        )
    assert "✗ batch=1" in str(info.value)
    assert sum("✗ broken parity" in r.getMessage() for r in caplog.records) == 2
