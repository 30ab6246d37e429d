"""The demo corpus: deduplicated, conflicting lines dropped, hotel reviews held out, split fixed by the seed."""

from __future__ import annotations

import json

from structbert_lite.reviews import corpus_files, load_reviews
from structbert_lite.train import demo_model


def test_reviews_are_deduplicated_and_conflicts_dropped():
    rows = load_reviews()
    texts = [t for t, _ in rows]
    assert len(texts) == len(set(texts)), "a text appears once, with one label"
    assert all(t == t.strip() and t for t in texts)
    pos_path, neg_path = corpus_files()
    pos = {line.strip() for line in pos_path.read_text(encoding="utf-8").splitlines()}
    neg = {line.strip() for line in neg_path.read_text(encoding="utf-8").splitlines()}
    assert not (set(texts) & pos & neg)
    assert {label for _, label in rows} == {"negative", "positive"}
    assert len(rows) > 15000


def test_hotel_reviews_are_held_out_of_the_demo_corpus():
    rows = list(load_reviews())
    demo, hotel = demo_model.split_domain(rows)
    assert len(demo) + len(hotel) == len(rows) and not {t for t, _ in demo} & {t for t, _ in hotel}
    assert all(demo_model.DOMAIN_PATTERN.search(t) for t, _ in hotel)
    assert not any(demo_model.DOMAIN_PATTERN.search(t) for t, _ in demo)
    assert 4000 < len(hotel) < 6000 and {y for _, y in hotel} == {"negative", "positive"}
    assert sum("酒店" in t for t, _ in hotel) > 1000  # it is the hotel domain, not a stray keyword


def test_split_is_fixed_by_seed_and_disjoint():
    rows = list(load_reviews())
    train_a, test_a = demo_model.split_reviews(rows, 0.1, seed=7)
    train_b, test_b = demo_model.split_reviews(rows, 0.1, seed=7)
    assert test_a == test_b and train_a == train_b
    assert not ({t for t, _ in train_a} & {t for t, _ in test_a})
    assert abs(len(test_a) - round(0.1 * len(rows))) <= 1
    _, test_c = demo_model.split_reviews(rows, 0.1, seed=8)
    assert test_c != test_a


def test_labelled_files_name_labels_as_the_checkpoint_does(tmp_path):
    demo_model.write_labelled_jsonl(tmp_path / "h.jsonl", [("好", "positive"), ("差", "negative")])
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": "好", "label": "正面"}, {"text": "差", "label": "负面"}]


def test_vocab_is_bert_shaped():
    vocab = demo_model.build_vocab(["这个好不好", "好的 great 好", "great!!"], min_count=1)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "好" in vocab and "g" in vocab and "##r" in vocab and "!" in vocab
    assert len(vocab) == len(set(vocab))
