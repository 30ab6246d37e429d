"""Source resolution without downloading: ids are classified, mistyped local paths fail at once with the
nearest names and never reach the network, unfinished downloads are refused, the child's bounds are ours.
(Downloads against a real local hub: test_hub_modelscope.py, test_hub_huggingface.py.)"""

from __future__ import annotations

import time

import pytest

from structbert_lite.convert import hub_download, sources
from structbert_lite.errors import SourceError
from tests.hub_server import HubServer


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("demo", "demo"),
        ("hf:owner/name", "huggingface"),
        ("hf:bert-base-chinese", "huggingface"),
        ("damo/nlp_structbert_sentiment-classification_chinese-base", "modelscope"),
        ("iic/nlp_structbert_sentiment-classification_chinese-base", "modelscope"),
        ("modelscope:owner/name", "modelscope"),
        ("./relative/dir", "local"),
        ("/abs/dir", "local"),
        ("models/ckpt/v2", "local"),
        ("ckpt/", "local"),
    ],
)
def test_classify(spec, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sources.classify(spec) == kind


@pytest.mark.parametrize("spec, message", [("not a model id", "neither an existing directory"),
                                           ("hf:a b", "not a Hugging Face id"),
                                           ("modelscope:nope", "not a ModelScope id")])
def test_unrecognised_source(spec, message):
    with pytest.raises(SourceError, match=message):
        sources.classify(spec)


def test_local_dir(tmp_path):
    resolved = sources.resolve_source(str(tmp_path))
    assert resolved.kind == "local" and resolved.path == tmp_path.resolve() and resolved.revision is None


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A live hub that must see no request: any request would mean a local path went to the network."""
    with HubServer() as server:
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
        monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        yield server


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("mymodels/checkpoint",
         "model folder 'mymodels/checkpoint' does not exist (did you mean 'mymodels/checkpoints'?)"),
        ("mymodels/checkpoints/v1", "does not exist (mymodels/checkpoints/ holds v2)"),
        ("./mymodels/chekpoints", "does not exist (did you mean 'mymodels/checkpoints'?)"),
        ("mymodel/checkpoints",
         "there is no local folder 'mymodel' (did you mean 'mymodels/checkpoints'?) and it was not sent"),
        ("mymodls",
         "neither an existing directory, a ModelScope id (owner/name) nor 'hf:owner/name' (did you mean 'mymodels'?)"),
    ],
    ids=["one-slash-typo", "deeper-typo", "dot-slash-typo", "owner-typo", "bare-typo"],
)
def test_mistyped_local_path_never_goes_to_the_network(tmp_path, monkeypatch, hub, spec, expected):
    """Issue 10/11: `mymodels/checkpoint` (one slash) under a local mymodels/ is a path, not a hub id: one line
    naming the nearest existing folder, at once, and the hub sees no request."""
    (tmp_path / "work" / "mymodels" / "checkpoints" / "v2").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        sources.resolve_source(spec)
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert hub.log == []


def test_modelscope_prefix_forces_the_hub_reading(tmp_path, monkeypatch):
    (tmp_path / "damo").mkdir()
    monkeypatch.chdir(tmp_path)
    assert sources.classify("damo/x") == "local"  # a local damo/ folder claims the spec...
    assert sources.classify("modelscope:damo/x") == "modelscope"  # ...unless the hub is asked for by name


def test_known_owners_stay_hub_ids_next_to_similar_folders(tmp_path, monkeypatch):
    (tmp_path / "dam").mkdir()
    (tmp_path / "iicc").mkdir()
    monkeypatch.chdir(tmp_path)
    assert sources.classify("damo/x") == "modelscope" and sources.classify("iic/x") == "modelscope"


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SourceError, match="is a file; pass the folder"):
        sources.resolve_source(str(tmp_path / "config.json"))


@pytest.mark.parametrize("leftover", [hub_download.INCOMPLETE_MARKER, "pytorch_model.bin.incomplete"])
def test_an_unfinished_download_is_refused_as_a_local_folder(tmp_path, leftover):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / leftover).write_text("the connection dropped")
    with pytest.raises(SourceError, match="did not finish|unfinished download"):
        sources.resolve_source(str(tmp_path))


def test_child_gets_our_bounds_unless_the_user_set_them():
    env = hub_download.child_env({"MODELSCOPE_DOWNLOAD_MAX_RETRIES": "7", "PATH": "/bin"}, interactive=False)
    assert env["MODELSCOPE_DOWNLOAD_MAX_RETRIES"] == "7"  # the user's value wins
    for key, value in hub_download.DEFAULT_BOUNDS.items():
        if key != "MODELSCOPE_DOWNLOAD_MAX_RETRIES":
            assert env[key] == value
    assert env["TQDM_DISABLE"] == "1" and env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and env["PATH"] == "/bin"
    assert "TQDM_DISABLE" not in hub_download.child_env({}, interactive=True)
    # seconds, not minutes: no idle limit above 15 s and at most one retry by default
    assert max(int(v) for k, v in hub_download.DEFAULT_BOUNDS.items() if "TIMEOUT" in k or "WINDOW" in k) <= 15
    assert int(hub_download.DEFAULT_BOUNDS["MODELSCOPE_DOWNLOAD_MAX_RETRIES"]) <= 2


@pytest.mark.parametrize(
    "text, limit, expected",
    [
        ("short message", 50, "short message"),
        ("[E1003] one\n  two   three", 50, "one two three"),
        ("alpha beta gamma delta", 14, "alpha beta …"),
        ("Connection broken: IncompleteRead(48545 bytes read)", 30, "Connection broken …"),
    ],
)
def test_one_line_never_cuts_mid_word(text, limit, expected):
    assert hub_download.one_line(text, limit) == expected
