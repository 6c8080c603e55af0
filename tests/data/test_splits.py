"""Splits of a corpus of your own: by document, or by byte range when too few."""

import pytest

from kerasllm.data import (
    CorpusError,
    byte_range_split,
    corpus_documents,
    split_rule,
)
from kerasllm.data.splits import MIN_DOCUMENTS

SPLITS = ("train", "val", "test")


def _japanese_file(path, lines=3000):
    text = "".join(f"吾輩は猫である。これは第{i}行の文章で、名前はまだ無い。\n" for i in range(lines))
    path.write_text(text, encoding="utf-8")
    return text


def test_one_file_is_split_by_byte_range_into_contiguous_parts(tmp_path):
    path = tmp_path / "ja.txt"
    text = _japanese_file(path)
    rule = split_rule(str(path))
    assert rule["rule"] == "byte_range" and rule["documents"] == 1
    assert rule["bytes"] == len(text.encode("utf-8"))
    assert "byte range" in rule["note"] and "1 document" in rule["note"]
    parts = {s: list(corpus_documents(str(path), split=s)) for s in SPLITS}
    # Never overlapping, nothing lost: the parts in order are the file.
    assert "".join(parts["train"] + parts["val"] + parts["test"]) == text
    sizes = {s: sum(len(p.encode("utf-8")) for p in parts[s]) for s in SPLITS}
    total = sum(sizes.values())
    assert sizes["train"] / total == pytest.approx(0.90, abs=0.01)
    assert sizes["val"] / total == pytest.approx(0.05, abs=0.01)
    # Each cut falls at the start of a line.
    assert parts["val"][0].startswith("吾輩は猫") and parts["train"][-1].endswith("\n")


def test_byte_range_split_is_reproducible_and_never_cuts_a_character():
    documents = ["あいうえお" * 3000, "かきくけこ" * 3000, "abc" * 10]  # no newlines
    total = sum(len(d.encode("utf-8")) for d in documents)
    parts = {s: list(byte_range_split(documents, s, total)) for s in SPLITS}
    again = {s: list(byte_range_split(iter(documents), s, total)) for s in SPLITS}
    assert parts == again
    assert "".join(sum(parts.values(), [])) == "".join(documents)
    assert all(parts[s] for s in SPLITS)


def test_few_documents_use_byte_ranges_many_use_the_document_hash(tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(10):
        (few / f"{i}.txt").write_text(f"文書{i}。" * 200, encoding="utf-8")
    assert split_rule(str(few))["rule"] == "byte_range"
    assert all(list(corpus_documents(str(few), split=s)) for s in SPLITS)

    many = tmp_path / "many"
    many.mkdir()
    for i in range(MIN_DOCUMENTS + 50):
        (many / f"{i:04d}.txt").write_text(f"document {i}", encoding="utf-8")
    assert split_rule(str(many))["rule"] == "document"


def test_text_unit_turns_one_file_into_many_documents(tmp_path):
    path = tmp_path / "ja.txt"
    _japanese_file(path, lines=400)
    assert split_rule(str(path), text_unit="line")["rule"] == "document"
    val = list(corpus_documents(str(path), split="val", text_unit="line"))
    train = list(corpus_documents(str(path), split="train", text_unit="line"))
    assert val and not set(val) & set(train)


def test_the_rule_follows_an_edited_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one line\n" * 100, encoding="utf-8")
    assert split_rule(str(path))["bytes"] == 900
    path.write_text("one line\n" * 200, encoding="utf-8")
    assert split_rule(str(path))["bytes"] == 1800


def test_an_empty_split_names_the_split_and_how_to_choose_another(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abc", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"'val' split of the corpus is empty.*--split all"):
        list(corpus_documents(str(path), split="val"))
    assert list(corpus_documents(str(path), split="all")) == ["abc"]
