import json

import pytest

from kerasllm.cli import main

JAPANESE = "吾輩は猫である。名前はまだ無い。"


def test_data_stats_json(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text(JAPANESE, encoding="utf-8")
    assert main(["data", "stats", "--input", str(tmp_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 2
    assert stats["chars"] == 8 + len(JAPANESE)
    assert stats["bytes"] == 8 + len(JAPANESE.encode("utf-8"))
    assert stats["lines"] == 3


def test_data_clean_writes_jsonl_and_report(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    records = [{"text": JAPANESE}, {"text": JAPANESE}, {"text": "trailing   \n"}, {"text": "x"}]
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), "utf-8")
    output = tmp_path / "out" / "clean.jsonl"
    argv = ["data", "clean", "--input", str(corpus), "--output", str(output)]
    assert main(argv + ["--min-chars", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = output.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == [JAPANESE, "trailing\n"]
    assert summary["documents_in"] == 4 and summary["documents_out"] == 2
    report = json.loads((tmp_path / "out" / "clean.report.json").read_text("utf-8"))
    assert report["steps"] == summary["steps"]
    # The cleaned file is a corpus again.
    assert main(["data", "stats", "--input", str(output), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 2


def test_data_clean_error_leaves_no_output(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"bad \xff byte")
    output = tmp_path / "clean.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "clean", "--input", str(tmp_path), "--output", str(output)])
    assert exit_info.value.code == 2
    assert "byte offset 4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_unknown_corpus_is_a_clean_cli_error(capsys):
    with pytest.raises(SystemExit):
        main(["data", "stats", "--input", "wikipedia"])
    assert "python-stdlib" in capsys.readouterr().err


def test_data_cache_builds_then_reuses(tmp_path, capsys):
    tokenizers = pytest.importorskip("kerasllm.tokenizers")
    if not hasattr(tokenizers, "train_tokenizer"):
        pytest.skip("kerasllm.tokenizers.train_tokenizer has not landed")
    documents = ["def f(x):\n    return x\n", JAPANESE, "hello world"] * 3
    tokenizers.train_tokenizer(
        documents, kind="bpe", vocab_size=300, output_dir=tmp_path / "tok", show_progress=False
    )
    (tmp_path / "corpus").mkdir()
    for i, text in enumerate(documents):
        (tmp_path / "corpus" / f"{i}.txt").write_text(text, encoding="utf-8")
    argv = ["data", "cache", "--input", str(tmp_path / "corpus"), "--split", "all"]
    argv += ["--tokenizer", str(tmp_path / "tok"), "--output", str(tmp_path / "cache"), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["num_documents"] == len(documents)
    written = (tmp_path / "cache" / "tokens.npy").stat().st_mtime_ns
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == first["fingerprint"]
    assert (tmp_path / "cache" / "tokens.npy").stat().st_mtime_ns == written  # reused
    # A directory of other files is never turned into a cache.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep")
    foreign = argv[:-3] + ["--output", str(tmp_path / "notes"), "--json"]
    with pytest.raises(SystemExit) as exit_info:
        main(foreign)
    assert exit_info.value.code == 2
    assert "not written by kerasllm" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]
