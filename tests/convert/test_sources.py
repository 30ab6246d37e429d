"""Source resolution, without the network: ids are classified, failed downloads say how to work offline."""

from __future__ import annotations

import pytest

from structbert_lite.convert import sources
from structbert_lite.errors import SourceError


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("demo", "demo"),
        ("hf:owner/name", "huggingface"),
        ("damo/nlp_structbert_sentiment-classification_chinese-base", "modelscope"),
        ("./relative/dir", "local"),
        ("/abs/dir", "local"),
    ],
)
def test_classify(spec, kind):
    assert sources.classify(spec) == kind


def test_unrecognised_source():
    with pytest.raises(SourceError, match="neither an existing directory"):
        sources.classify("not a model id")


def test_local_dir(tmp_path):
    resolved = sources.resolve_source(str(tmp_path))
    assert resolved.kind == "local" and resolved.path == tmp_path.resolve()


def test_missing_local_dir(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        sources.resolve_source(str(tmp_path / "missing"))


def test_modelscope_failure_says_how_to_work_offline(monkeypatch):
    import modelscope
    from modelscope.hub.errors import NetworkError

    seen = {}

    def fake_snapshot_download(model_id, **kwargs):
        seen.update(kwargs, model_id=model_id)
        raise NetworkError("Connection refused")

    monkeypatch.setattr(modelscope, "snapshot_download", fake_snapshot_download)
    with pytest.raises(SourceError) as info:
        sources.resolve_source("damo/x", revision="v1.0.0", cache_dir="/tmp/cache")
    message = str(info.value)
    assert "could not download 'damo/x' (revision v1.0.0)" in message
    assert "NetworkError" in message and "--model DIR" in message and "make demo" in message
    assert seen["revision"] == "v1.0.0" and seen["cache_dir"] == "/tmp/cache"


def test_hf_failure_says_how_to_work_offline(monkeypatch):
    import huggingface_hub

    def fake(repo_id, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(SourceError, match=r"could not download hf:owner/name .*--model DIR"):
        sources.resolve_source("hf:owner/name")
