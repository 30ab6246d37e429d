"""The REST API over the tiny artifact: contract, bad inputs, batch = single, cache, health, OpenAPI."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from serve_support import started_client, wait_ready

from structbert_lite.artifact import manifest_digest

TEXTS = ["这部电影太好看了", "完全浪费时间", "差劲", "非常喜欢", "价格便宜", "服务态度很一般", "酒店房间干净", "差劲"]


@pytest.fixture(scope="module")
def strict_client(tiny_artifact):
    """Tight limits, so each one can be crossed cheaply: 4 texts per batch, 16 tokens (rejected), 16 KiB bodies."""
    with started_client(tiny_artifact, max_batch=4, max_length=16, overlong="reject", max_body_bytes=16384,
                        cache_size=0) as client:
        yield client


def test_predict_answers_label_and_score(make_client):
    client = make_client()
    response = client.post("/predict", json={"text": "这部电影太烂了，完全浪费时间"})
    assert response.status_code == 200
    body = response.json()
    assert body["label"] in ("Positive", "Negative")
    assert 0.5 <= body["score"] <= 1.0  # probability of the returned (most likely) label


def test_predict_matches_the_shared_runtime(make_client, tiny_artifact):
    from structbert_lite.runtime import OnnxClassifier

    expected = OnnxClassifier(tiny_artifact, max_length=128).predict(TEXTS)
    client = make_client(cache_size=0)
    for text, want in zip(TEXTS, expected, strict=True):
        got = client.post("/predict", json={"text": text}).json()
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_batch_equals_single_in_order(make_client):
    client = make_client(cache_size=0)
    singles = [client.post("/predict", json={"text": t}).json() for t in TEXTS]
    response = client.post("/predict_batch", json={"texts": TEXTS})
    assert response.status_code == 200
    batch = response.json()
    assert [b["label"] for b in batch] == [s["label"] for s in singles]
    # Padding to the longest text changes the float summation order, not the maths: equal to 1e-5.
    assert [b["score"] for b in batch] == pytest.approx([s["score"] for s in singles], abs=1e-5)
    assert len({json.dumps(batch[2]), json.dumps(batch[7])}) == 1  # the same text twice, the same answer


def test_empty_batch_is_an_empty_list(make_client):
    assert make_client().post("/predict_batch", json={"texts": []}).json() == []


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(make_client):
    client = make_client(cache_size=0, batch_wait_ms=50)
    expected = {t: client.post("/predict", json={"text": t}).json() for t in set(TEXTS)}
    answers, errors = {}, []

    def ask(i, text):
        try:
            answers[i] = (text, client.post("/predict", json={"text": text}).json())
        except Exception as exc:  # noqa: BLE001 - a thread's error would be lost: kept, asserted empty below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i, TEXTS[i % len(TEXTS)])) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(answers) == 16
    for text, got in answers.values():
        assert got["label"] == expected[text]["label"]
        assert got["score"] == pytest.approx(expected[text]["score"], abs=1e-5)
    stats = client.get("/stats").json()["batching"]
    assert stats["largest_batch"] > 1, stats


def test_cache_counts_hits_and_can_be_off(make_client):
    client = make_client(cache_size=2)
    first = client.post("/predict", json={"text": "非常喜欢"}).json()
    second = client.post("/predict", json={"text": "非常喜欢"}).json()
    assert first == second
    cache = client.get("/stats").json()["cache"]
    assert (cache["hits"], cache["misses"], cache["size"], cache["capacity"]) == (1, 1, 1, 2)
    assert client.get("/health").json()["cache"]["hits"] == 1

    off = make_client(cache_size=0)
    off.post("/predict", json={"text": "非常喜欢"})
    off.post("/predict", json={"text": "非常喜欢"})
    assert off.get("/stats").json()["cache"] == {"capacity": 0, "size": 0, "hits": 0, "misses": 0, "hit_rate": 0.0}


def test_lru_evicts_least_recently_used():
    from structbert_lite.serve.cache import PredictionCache

    cache = PredictionCache(2)
    cache.put("a", (0.1, 0.9))
    cache.put("b", (0.8, 0.2))
    assert cache.get("a") == (0.1, 0.9)  # a is now the most recent
    cache.put("c", (0.3, 0.7))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") == (0.3, 0.7)


def test_health_reports_artifact_after_warm_up(make_client, tiny_artifact):
    health = make_client().get("/health").json()
    assert health["status"] == "ready" and health["ready"] is True
    assert health["artifact"] == {"name": "tiny", "variant": "fp32", "manifest_sha256": manifest_digest(tiny_artifact),
                                  "path": str(tiny_artifact), "run": None, "published_set": None}  # not in a set
    assert health["model"]["labels"] == ["Negative", "Positive"]
    assert health["model"]["checkpoint_labels"] == ["负面", "正面"]  # config.json's id2label, same order
    assert health["model"]["batch_invariant"] is True and health["model"]["texts_per_model_call"] > 1  # fp32
    assert (health["model"]["engine"], health["model"]["truncation"]) == ("onnxruntime", "head")
    assert health["cpu"]["checked"] is False  # an fp32 manifest has no quantization block
    assert health["warmup_ms"] is not None


def test_health_is_not_ready_until_warm_up_answered(tiny_artifact):
    from fastapi.testclient import TestClient

    from structbert_lite.serve.app import create_app

    app = create_app(tiny_artifact)
    engine = app.state.serve.engine
    release = threading.Event()
    original = engine.warm_up
    engine.warm_up = lambda: (release.wait(10), original())[1]
    with TestClient(app) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "starting"
        release.set()
        assert wait_ready(client)["status"] == "ready"


def test_overlong_text_is_truncated_by_default(make_client):
    client = make_client(max_length=16, cache_size=0)
    long_text = "非常喜欢" * 50
    response = client.post("/predict", json={"text": long_text})
    assert response.status_code == 200
    # Truncation keeps [CLS] + 14 characters + [SEP].
    assert response.json() == client.post("/predict", json={"text": long_text[:14]}).json()


def test_body_without_json_content_type_is_read_as_json(strict_client):
    response = strict_client.post("/predict", content=json.dumps({"text": "差劲"}).encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()["label"] in ("Positive", "Negative")


def _chunks(total: int, size: int = 1024):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


BAD_INPUTS = [
    # (id, path, request kwargs, status, error code, fragment of the detail)
    ("invalid-json", "/predict", {"content": b'{"text": "\xe5\xa5\xbd"'}, 400, "invalid_json", "not valid JSON"),
    ("not-json-at-all", "/predict", {"content": b"text=hello"}, 400, "invalid_json", "not valid JSON"),
    ("empty-body", "/predict", {"content": b""}, 400, "empty_body", "body is empty"),
    ("non-utf8", "/predict", {"content": b'{"text": "\xff\xfe bad"}'}, 400, "invalid_utf8", "byte 0xff at offset 10"),
    ("latin1-text", "/predict", {"content": '{"text": "café"}'.encode("latin-1")}, 400, "invalid_utf8",
     "not valid UTF-8"),
    ("too-deep", "/predict", {"content": b"[" * 3000 + b"]" * 3000}, 400, "invalid_json", "RecursionError"),
    ("huge-int", "/predict", {"content": b'{"text": ' + b"9" * 5000 + b"}"}, 400, "invalid_json", "not accept"),
    ("missing-field", "/predict", {"json": {}}, 422, "invalid_request", "text: field required"),
    ("misspelt-field", "/predict", {"json": {"txt": "好"}}, 422, "invalid_request", "text: field required"),
    ("text-is-number", "/predict", {"json": {"text": 5}}, 422, "invalid_request",
     "text: Input should be a valid string"),
    ("text-is-null", "/predict", {"json": {"text": None}}, 422, "invalid_request",
     "text: Input should be a valid string"),
    ("text-is-list", "/predict", {"json": {"text": ["好"]}}, 422, "invalid_request",
     "text: Input should be a valid string"),
    ("body-is-list", "/predict", {"json": ["好"]}, 422, "invalid_request", "must be a JSON object"),
    ("body-is-string", "/predict", {"json": "好"}, 422, "invalid_request", "must be a JSON object"),
    ("empty-text", "/predict", {"json": {"text": ""}}, 422, "invalid_request", "text: text is empty"),
    ("blank-text", "/predict", {"json": {"text": " \n\t "}}, 422, "invalid_request", "text is empty"),
    ("zero-width-space", "/predict", {"json": {"text": "\u200b"}}, 422, "invalid_request", "text: text is empty"),
    ("zero-width-joiner", "/predict", {"json": {"text": "\u200d\u200d"}}, 422, "invalid_request", "text is empty"),
    ("bom-only", "/predict", {"json": {"text": "\ufeff"}}, 422, "invalid_request", "text is empty"),
    ("nul-only", "/predict", {"json": {"text": "\x00\x00"}}, 422, "invalid_request", "text is empty"),
    ("invisible-mix", "/predict", {"json": {"text": " \u200b\u200d\ufeff\x00\u00ad\u2060\u3000\u2028\t"}}, 422,
     "invalid_request", "invisible characters"),
    ("only-combining-marks", "/predict", {"json": {"text": "\u0301\u0301"}}, 422, "invalid_request",
     "text is empty once tokenized"),
    ("only-replacement-chars", "/predict", {"json": {"text": "\ufffd"}}, 422, "invalid_request", "text is empty once"),
    ("texts-item-invisible", "/predict_batch", {"json": {"texts": ["好", "\u200b\ufeff"]}}, 422, "invalid_request",
     "texts[1]: text is empty"),
    ("texts-item-no-token", "/predict_batch", {"json": {"texts": ["好", "\ue000"]}}, 422, "invalid_request",
     "texts[1]: text is empty once tokenized"),
    ("unknown-format", "/predict?format=xml", {"json": {"text": "好"}}, 422, "invalid_request",
     "format: Input should be 'default' or 'modelscope'"),
    ("lone-surrogate", "/predict", {"content": b'{"text": "ok \\ud800"}'}, 422, "invalid_request",
     "unpaired surrogate"),
    ("overlong-text", "/predict", {"json": {"text": "好" * 40}}, 422, "text_too_long",
     "text is 42 tokens, over the limit of 16"),
    ("texts-missing", "/predict_batch", {"json": {"text": "好"}}, 422, "invalid_request", "texts: field required"),
    ("texts-not-list", "/predict_batch", {"json": {"texts": "好"}}, 422, "invalid_request",
     "texts: Input should be a valid list"),
    ("texts-item-empty", "/predict_batch", {"json": {"texts": ["好", ""]}}, 422, "invalid_request",
     "texts[1]: text is empty"),
    ("texts-item-number", "/predict_batch", {"json": {"texts": ["好", 3]}}, 422, "invalid_request",
     "texts[1]: Input should be"),
    ("texts-item-overlong", "/predict_batch", {"json": {"texts": ["好", "好" * 40]}}, 422, "text_too_long",
     "texts[1]: text is 42 tokens"),
    ("batch-too-big", "/predict_batch", {"json": {"texts": ["好"] * 5}}, 422, "invalid_request",
     "5 texts is over the limit of 4"),
    ("huge-body", "/predict", {"content": b'{"text": "' + b"a" * 20000 + b'"}'}, 413, "body_too_large",
     "over the limit of 16384"),
    ("huge-chunked-body", "/predict", {"content": _chunks(100_000)}, 413, "body_too_large", "--max-body-bytes"),
]


@pytest.mark.parametrize(("path", "kwargs", "status", "error", "fragment"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(strict_client, path, kwargs, status, error, fragment):
    if "content" in kwargs and not isinstance(kwargs["content"], (bytes, str)):
        kwargs = {"content": _chunks(100_000)}  # generators are single-use; parametrize shares the object
    response = strict_client.post(path, headers={"Content-Type": "application/json"}, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error
    assert fragment in body["detail"], body
    # The server is still fine afterwards.
    assert strict_client.post("/predict", json={"text": "好"}).status_code == 200


@pytest.mark.parametrize(("method", "path", "status", "error"), [
    ("GET", "/predict", 405, "method_not_allowed"),
    ("POST", "/nope", 404, "not_found"),
    ("GET", "/nope", 404, "not_found"),
    ("DELETE", "/predict", 405, "method_not_allowed"),
    ("PUT", "/predict_batch", 405, "method_not_allowed"),
])
def test_unknown_routes_and_methods_get_json_errors(strict_client, method, path, status, error):
    response = strict_client.request(method, path, content=b"" if method != "POST" else b'{"text": "x"}')
    assert response.status_code == status
    assert response.json()["error"] == error


def test_openapi_describes_the_api(strict_client):
    spec = strict_client.get("/openapi.json").json()
    assert {"/predict", "/predict_batch", "/health", "/stats"} <= set(spec["paths"])
    batch_schema = spec["components"]["schemas"]["PredictBatchRequest"]["properties"]["texts"]
    assert batch_schema["maxItems"] == 4
    assert {"408", "413", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    for path in ("/predict", "/predict_batch"):
        (param,) = spec["paths"][path]["post"]["parameters"]
        assert (param["name"], param["in"]) == ("format", "query")
    assert spec["components"]["schemas"]["AnswerFormat"]["enum"] == ["default", "modelscope"]
    drop_in = spec["components"]["schemas"]["ModelScopePrediction"]["properties"]
    assert set(drop_in) == {"scores", "labels"} and "正面" in drop_in["labels"]["description"]
    assert "Positive = 正面" in spec["components"]["schemas"]["Prediction"]["properties"]["label"]["description"]


def test_modelscope_format_is_modelscopes_pipeline_answer(make_client, tiny_artifact):
    """?format=modelscope: softmax of the same logits, sorted descending, the checkpoint's label names."""
    from structbert_lite.runtime import OnnxClassifier, softmax

    client = make_client(cache_size=0)
    logits = OnnxClassifier(tiny_artifact, max_length=128).logits(TEXTS[:3], batch_size=1)
    for text, row in zip(TEXTS[:3], logits, strict=True):
        probs = softmax(row)
        order = np.argsort(-probs)
        expected = {"scores": probs[order].tolist(), "labels": [["负面", "正面"][i] for i in order]}
        got = client.post("/predict?format=modelscope", json={"text": text}).json()
        assert got["labels"] == expected["labels"]
        assert got["scores"] == pytest.approx(expected["scores"], abs=1e-6)
        default = client.post("/predict?format=default", json={"text": text}).json()
        assert default == client.post("/predict", json={"text": text}).json()
        assert default["label"] == {"正面": "Positive", "负面": "Negative"}[got["labels"][0]]
        assert default["score"] == pytest.approx(got["scores"][0])
    batch = client.post("/predict_batch?format=modelscope", json={"texts": TEXTS}).json()
    assert [b["labels"] for b in batch[:3]] == [
        client.post("/predict?format=modelscope", json={"text": t}).json()["labels"] for t in TEXTS[:3]]


def test_cached_answers_come_in_either_format(make_client):
    client = make_client(cache_size=8)
    first = client.post("/predict?format=modelscope", json={"text": "非常喜欢"}).json()
    second = client.post("/predict", json={"text": "非常喜欢"}).json()  # from the cache
    assert client.get("/stats").json()["cache"]["hits"] == 1
    assert second["score"] == pytest.approx(first["scores"][0])


def test_visible_text_with_invisible_characters_is_answered(make_client):
    client = make_client(cache_size=0)
    plain = client.post("/predict", json={"text": "非常喜欢"}).json()
    # the tokenizer drops them
    assert client.post("/predict", json={"text": "\ufeff非常\u200b喜欢\u200d"}).json() == plain
    assert client.post("/predict", json={"text": "\u0301好"}).status_code == 200


def test_index_page_is_self_contained(strict_client):
    response = strict_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert 'id="text"' in page and 'id="submit"' in page and 'id="label"' in page
    for remote in ("http://", "https://", "//cdn", "<link", "src="):
        assert remote not in page, f"the page must not load {remote!r} assets"
    # Chinese must not render as boxes where the default UI font lacks CJK glyphs: name CJK fonts first.
    assert ':root { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei",' in page
    assert '"WenQuanYi Micro Hei"' in page
    assert 'id="label-name"' in page  # the checkpoint's name (正面/负面) beside the API's (Positive/Negative)
    assert strict_client.get("/docs").status_code == 404  # Swagger UI would pull scripts from a CDN
