"""The shared trainer on tiny models: seeded determinism, early stopping keeps the best epoch, the loss hook,
freezing."""

from __future__ import annotations

import pytest
import torch

from structbert_lite.train.batching import count_batches, epoch_batches
from structbert_lite.train.settings import TrainSettings
from structbert_lite.train.trainer import accuracy, predict_logits, train
from tests.builders import tiny_model
from tests.train.synthetic import VOCAB, encoded, make_reviews, write_vocab

SETTINGS = dict(
    epochs=3, batch_size=4, learning_rate=5e-3, warmup_share=0.1, max_length=32, threads=1, device="cpu", patience=None
)


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt")


@pytest.fixture(scope="module")
def data(vocab_path):
    rows = make_reviews(60, seed=1)
    return encoded(rows[:96], vocab_path), encoded(rows[96:], vocab_path)


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_seeded_runs_are_identical_and_learn(data):
    train_set, heldout = data
    runs = []
    for _ in range(2):
        model = tiny_model(seed=0, vocab_size=len(VOCAB))
        result = train(model, train_set, TrainSettings(**SETTINGS, seed=7), heldout=heldout, quiet=True)
        runs.append((weights(model), result))
    (w1, r1), (w2, r2) = runs
    assert [r["train_loss"] for r in r1.history] == [r["train_loss"] for r in r2.history]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert r1.best_accuracy >= 0.9, r1.history  # the synthetic task is easy: the loop really trains
    assert r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]
    assert {"train_loss", "loss_curve", "heldout_accuracy", "texts_per_s", "seconds", "lr"} <= set(r1.history[0])


def test_batches_are_bucketed_shuffled_and_seeded():
    lengths = [i % 37 for i in range(1000)]
    batches = epoch_batches(lengths, 16, seed=7, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == count_batches(1000, 16)
    assert batches == epoch_batches(lengths, 16, seed=7, epoch=1)
    assert batches != epoch_batches(lengths, 16, seed=8, epoch=1) != epoch_batches(lengths, 16, seed=7, epoch=2)
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert padding < 0.1 * sum(lengths), "length bucketing keeps padding small"


def test_early_stopping_keeps_the_best_epoch(data):
    """Held-out labels are the opposite of training's: held-out accuracy falls as training goes on."""
    train_set, heldout = data
    inverted = type(heldout)(heldout.ids, {"labels": 1 - heldout.fields["labels"]}, heldout.pad_id)
    model = tiny_model(seed=0, vocab_size=len(VOCAB))
    snapshots = {}
    settings = TrainSettings(**{**SETTINGS, "epochs": 8, "patience": 2}, seed=3)
    def snapshot(record):
        snapshots[record["epoch"]] = weights(model)

    result = train(model, train_set, settings, heldout=inverted, quiet=True, on_epoch=snapshot)
    accs = [r["heldout_accuracy"] for r in result.history]
    assert result.stopped_early and len(result.history) == result.best_epoch + 2 < 8, accs
    assert result.best_accuracy == max(accs) == accs[result.best_epoch - 1]
    final = weights(model)
    assert all(torch.equal(final[k], snapshots[result.best_epoch][k]) for k in final)
    assert any(not torch.equal(final[k], snapshots[len(accs)][k]) for k in final)
    assert accuracy(predict_logits(model, inverted), inverted.fields["labels"].numpy()) == result.best_accuracy


def test_loss_hook_gets_extra_fields_row_aligned(data):
    """A distillation-style objective: KL to per-row teacher probabilities, no gold labels in the batch."""
    import torch.nn.functional as F

    train_set, heldout = data
    teacher = torch.nn.functional.one_hot(train_set.fields["labels"], 2).float() * 0.8 + 0.1  # (rows, 2)
    rows = torch.arange(len(train_set))
    soft = type(train_set)(train_set.ids, {"teacher_probs": teacher, "row": rows}, train_set.pad_id)
    seen = []

    def kl_loss(outputs, batch):
        assert torch.equal(batch["teacher_probs"], teacher[batch["row"]])  # fields follow the batch's rows
        seen.append(len(batch["row"]))
        return F.kl_div(F.log_softmax(outputs.logits, -1), batch["teacher_probs"], reduction="batchmean")

    model = tiny_model(seed=0, vocab_size=len(VOCAB))
    result = train(model, soft, TrainSettings(**SETTINGS, seed=1), heldout=heldout, loss_fn=kl_loss, quiet=True)
    assert sum(seen) == 3 * len(train_set)
    assert result.best_accuracy >= 0.9, result.history


def test_freezing_keeps_embeddings_and_first_layers(data):
    train_set, heldout = data
    model = tiny_model(seed=0, vocab_size=len(VOCAB))
    before = weights(model)
    settings = TrainSettings(**{**SETTINGS, "epochs": 1}, freeze_embeddings=True, freeze_layers=1)
    result = train(model, train_set, settings, quiet=True)
    after = weights(model)
    frozen = [k for k in after if k.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    trained = [k for k in after if k.startswith(("bert.encoder.layer.1.", "classifier."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert result.trainable_parameters == sum(p.numel() for n, p in model.named_parameters() if n not in frozen)
