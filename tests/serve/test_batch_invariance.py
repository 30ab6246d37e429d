"""A text's answer never depends on its neighbours - tested on the variant `make serve` serves: dynamic int8.

Dynamic int8 (`DynamicQuantizeLinear`) takes one activation scale per tensor, so batching texts together (and
padding them to the longest) changes every answer. The server must run such a variant one text per model call:
then /predict_batch equals /predict exactly, whatever else is in the batch or the micro-batcher. The control
case serves the same graph from a folder whose manifest (wrongly) claims it is batch-invariant, and shows the
answers then do differ - so the equality test can fail.
"""

from __future__ import annotations

import random
import shutil
import threading

import numpy as np
import pytest
from serve_support import CHARS, DYNAMIC_INT8_TOOL, INT8_SETTINGS, build_int8_variant, started_client

from structbert_lite.artifact import write_manifest

REVIEWS = [
    "好",
    "差劲",
    "非常喜欢",
    "房间干净，服务态度很好，价格便宜，下次还来",
    "完全浪费时间，这部电影太烂了",
    "东西收到了，质量还可以，就是快递有点慢，总的来说满意",
    "酒店的位置不错，但是房间太小，服务一般，价格也不便宜，不推荐",
    "这部电影太好看了！" * 6,
    "服务态度很差，东西质量也很一般，买了就后悔，再也不会在这家买了，大家不要上当，" * 4,
]


def mixed_length_texts(count: int = 40, seed: int = 11) -> list[str]:
    """Real-looking reviews plus random ones from 1 to 300 characters (truncated at 128 tokens)."""
    rng = random.Random(seed)
    lengths = [1, 3, 8, 20, 45, 90, 126, 200, 300]
    generated = ["".join(rng.choice(CHARS) for _ in range(rng.choice(lengths))) for _ in range(count - len(REVIEWS))]
    texts = REVIEWS + generated
    rng.shuffle(texts)
    return texts


TEXTS = mixed_length_texts()


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    return build_int8_variant(root / "int8-dynamic", root / "work")


@pytest.fixture(scope="module")
def int8_claimed_invariant(int8_artifact, tmp_path_factory):
    """The same graph, published with a (wrong) measurement saying it is batch-invariant."""
    folder = shutil.copytree(int8_artifact, tmp_path_factory.mktemp("claimed") / "int8-dynamic")
    write_manifest(folder, {"name": "tiny", "variant": "int8-dynamic",
                            "quantization": {**INT8_SETTINGS, "tool": DYNAMIC_INT8_TOOL},
                            "batch_invariance": {"invariant": True, "max_abs_score_diff": 0.0, "label_flips": 0}})
    return folder


def compare(single: list[dict], batch: list[dict]) -> tuple[int, float]:
    """(label flips, max |score difference| on the Positive probability)."""
    def positive(answer):
        return answer["score"] if answer["label"] == "Positive" else 1.0 - answer["score"]

    flips = sum(s["label"] != b["label"] for s, b in zip(single, batch, strict=True))
    return flips, max(abs(positive(s) - positive(b)) for s, b in zip(single, batch, strict=True))


def singles_and_batch(client) -> tuple[list[dict], list[dict]]:
    single = [client.post("/predict", json={"text": t}).json() for t in TEXTS]
    response = client.post("/predict_batch", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    return single, response.json()


def test_served_int8_runs_one_text_per_model_call(int8_artifact):
    with started_client(int8_artifact, cache_size=0) as client:
        model = client.get("/health").json()["model"]
    assert model["batch_invariant"] is False and model["texts_per_model_call"] == 1


def test_predict_batch_equals_predict_on_the_served_int8_with_the_cache_off(int8_artifact):
    with started_client(int8_artifact, cache_size=0) as client:
        single, batch = singles_and_batch(client)
        assert client.get("/stats").json()["cache"]["hits"] == 0
        drop_in = client.post("/predict_batch?format=modelscope", json={"texts": TEXTS}).json()
    flips, max_diff = compare(single, batch)
    assert flips == 0 and max_diff <= 1e-4, (flips, max_diff)
    assert [d["labels"][0] for d in drop_in] == [{"Positive": "正面", "Negative": "负面"}[s["label"]] for s in single]
    assert max(abs(d["scores"][0] - s["score"]) for d, s in zip(drop_in, single, strict=True)) <= 1e-4


def test_concurrent_requests_batched_by_the_server_keep_their_own_answers(int8_artifact):
    with started_client(int8_artifact, cache_size=0, batch_wait_ms=50) as client:
        expected = [client.post("/predict", json={"text": t}).json() for t in TEXTS]
        answers: dict[int, dict] = {}

        def ask(i: int) -> None:
            answers[i] = client.post("/predict", json={"text": TEXTS[i]}).json()

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(TEXTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        batching = client.get("/stats").json()["batching"]
    assert batching["largest_batch"] > 1, batching  # the micro-batcher did group requests...
    flips, max_diff = compare(expected, [answers[i] for i in range(len(TEXTS))])
    assert flips == 0 and max_diff <= 1e-4, (flips, max_diff)  # ...and no answer moved


def test_control_int8_batched_without_the_guarantee_does_differ(int8_claimed_invariant):
    """If the server trusted a wrong batch_invariance claim, /predict_batch would not equal /predict."""
    with started_client(int8_claimed_invariant, cache_size=0) as client:
        assert client.get("/health").json()["model"]["batch_invariant"] is True
        single, batch = singles_and_batch(client)
    flips, max_diff = compare(single, batch)
    assert max_diff > 1e-4, "dynamic int8 answered identically in batches: the equality test above proves nothing"


def test_the_runtime_alone_shows_the_same(int8_artifact):
    from structbert_lite.runtime import OnnxClassifier, open_variant, predict_logits

    served = open_variant(int8_artifact)
    assert served.batch_invariant is False
    alone = predict_logits(served, TEXTS, batch_size=1)
    assert np.array_equal(predict_logits(served, TEXTS, batch_size=16), alone)
    batched = predict_logits(OnnxClassifier(int8_artifact, batch_invariant=True), TEXTS, batch_size=16)
    assert np.abs(batched - alone).max() > 1e-3
