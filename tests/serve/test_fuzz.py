"""Property-based fuzzing of the API (hypothesis): whatever the body, the answer is JSON and never a 5xx.

The TestClient re-raises any exception inside the app, so a crash fails the test even before the status check.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import started_client

from structbert_lite.serve.schemas import is_blank

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any character, surrogates included (JSON can carry "\ud800" even though UTF-8 cannot).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5),
    max_leaves=20,
)
bodies = (
    json_values
    | st.fixed_dictionaries({"text": json_values})
    | st.fixed_dictionaries({"text": any_text})
    | st.fixed_dictionaries({"texts": st.lists(any_text, max_size=10)})
    | st.fixed_dictionaries({"texts": json_values})
)


@pytest.fixture(scope="module")
def fuzz_client(tiny_artifact):
    with started_client(tiny_artifact, max_batch=8, max_length=32, overlong="reject", max_body_bytes=4096,
                        cache_size=16) as client:
        yield client


def check_answer(response, path: str) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code == 200:
        answers = [body] if path == "/predict" else body
        for answer in answers:
            assert answer["label"] in ("Positive", "Negative") and 0.0 <= answer["score"] <= 1.0
    else:
        assert response.status_code in (400, 413, 422), response.text
        assert body["error"] and body["detail"]


@FUZZ
@given(text=st.text(st.sampled_from("\u200b\u200c\u200d\u2060\ufeff\x00\x01\x7f\u00ad \t\n\u3000\u2028\u2029\u180e"),
                    min_size=1, max_size=12))
def test_texts_of_invisible_characters_get_the_empty_text_422(fuzz_client, text):
    for path, body in (("/predict", {"text": text}), ("/predict_batch", {"texts": ["好", text]})):
        response = fuzz_client.post(path, json=body)
        assert response.status_code == 422 and "text is empty" in response.json()["detail"], (text, response.text)


@FUZZ
@given(path=st.sampled_from(["/predict", "/predict_batch"]), body=bodies)
def test_json_bodies_never_get_a_5xx(fuzz_client, path, body):
    # json.dumps, not httpx's json=: NaN/Infinity and lone surrogates must reach the server too.
    response = fuzz_client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    check_answer(response, path)


@FUZZ
@given(path=st.sampled_from(["/predict", "/predict_batch"]), body=st.binary(max_size=600),
       content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""]))
def test_raw_bytes_never_get_a_5xx(fuzz_client, path, body, content_type):
    response = fuzz_client.post(path, content=body, headers={"Content-Type": content_type} if content_type else {})
    check_answer(response, path)


@FUZZ
@given(text=st.text(min_size=1, max_size=25).filter(lambda t: not is_blank(t)))
def test_every_valid_text_is_answered_and_batch_agrees(fuzz_client, text):
    single = fuzz_client.post("/predict", json={"text": text})
    check_answer(single, "/predict")
    if single.status_code == 422:
        # Only overlong texts (emoji etc. can tokenize long) and texts the tokenizer drops entirely (combining
        # marks, private-use characters) may be refused.
        body = single.json()
        assert body["error"] == "text_too_long" or "text is empty once tokenized" in body["detail"], body
        return
    batch = fuzz_client.post("/predict_batch", json={"texts": [text, "好"]})
    assert batch.status_code == 200
    assert batch.json()[0]["label"] == single.json()["label"]
