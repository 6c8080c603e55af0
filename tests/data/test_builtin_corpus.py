import os
import subprocess
import sys
import sysconfig

import pytest

from kerasllm.data import (
    BUILTIN_CORPORA,
    builtin_corpus,
    builtin_corpus_files,
    corpus_documents,
)


def test_python_stdlib_splits_are_disjoint_and_cover_the_corpus():
    splits = {s: builtin_corpus_files("python-stdlib", s) for s in ("train", "val", "test")}
    everything = builtin_corpus_files("python-stdlib", "all")
    sets = {s: set(files) for s, files in splits.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == set(everything)
    # Roughly 90/5/5 of several hundred files.
    assert len(everything) > 300
    assert 0.8 < len(splits["train"]) / len(everything) < 0.97
    assert splits["val"] and splits["test"]


def test_python_stdlib_is_the_standard_library_without_tests_or_site_packages():
    root = sysconfig.get_paths()["stdlib"]
    files = builtin_corpus_files("python-stdlib", "all")
    relative = [os.path.relpath(f, root).split(os.sep) for f in files]
    assert ["os.py"] in relative
    assert all(f.endswith(".py") for f in files)
    assert not any(
        part in ("site-packages", "test", "tests", "__pycache__") for r in relative for part in r
    )


def test_split_is_deterministic_across_processes():
    # hash() is salted per process; split_of must not be.
    code = (
        "from kerasllm.data import builtin_corpus_files as f;"
        "import hashlib;"
        "print(hashlib.sha256('\\n'.join(f('python-stdlib', 'val')).encode()).hexdigest())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    # And this process (its own hash salt) computes the same split.
    import hashlib

    here = hashlib.sha256("\n".join(builtin_corpus_files("python-stdlib", "val")).encode()).hexdigest()
    assert outputs == {here + "\n"}


def test_builtin_corpus_reads_the_files_of_a_split():
    files = builtin_corpus_files("python-stdlib", "val")
    documents = list(builtin_corpus("python-stdlib", "val"))
    assert 0 < len(documents) <= len(files)
    with open(files[0], encoding="utf-8") as f:
        first = f.read()
    assert first in documents  # the file unchanged (empty files are skipped)


def test_unknown_builtin_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"python-stdlib.*Received: name='wikipedia'"):
        builtin_corpus("wikipedia")
    with pytest.raises(ValueError, match=r"python-stdlib.*Received: 'wikipedia'"):
        corpus_documents("wikipedia")
    with pytest.raises(ValueError, match="split='dev'"):
        builtin_corpus(split="dev")
    assert "python-stdlib" in BUILTIN_CORPORA


def test_corpus_documents_of_paths_split_by_document(tmp_path):
    for i in range(200):
        (tmp_path / f"{i:02d}.txt").write_text(f"document {i}", encoding="utf-8")
    everything = list(corpus_documents(str(tmp_path), split="all"))
    parts = [list(corpus_documents(str(tmp_path), split=s)) for s in ("train", "val", "test")]
    assert len(everything) == 200
    assert sorted(sum(parts, [])) == sorted(everything)
    assert len(parts[0]) > len(parts[1])
    with pytest.raises(ValueError, match="Reader options"):
        corpus_documents("python-stdlib", pattern="*.py")
    with pytest.raises(FileNotFoundError):
        corpus_documents(str(tmp_path / "missing.txt"))


_DEBIAN_DOC_JA_INSTALLED = any(
    __import__("glob").glob(pattern)
    for pattern in __import__("kerasllm.data.builtin", fromlist=["x"]).DEBIAN_DOC_JA.values()
)


@pytest.mark.skipif(
    not _DEBIAN_DOC_JA_INSTALLED,
    reason="needs the Debian packages debian-reference-ja, debian-faq-ja, "
    "maint-guide-ja, developers-reference-ja (tools/system-packages.txt)",
)
def test_debian_doc_ja_is_japanese_text_split_by_page():
    splits = {s: builtin_corpus_files("debian-doc-ja", s) for s in ("train", "val", "test")}
    everything = builtin_corpus_files("debian-doc-ja", "all")
    assert sorted(sum(splits.values(), [])) == sorted(everything)
    assert splits["val"] and len(splits["train"]) > 10 * len(splits["val"])
    val = list(builtin_corpus("debian-doc-ja", "val"))
    text = "\n".join(val)
    assert "<p>" not in text and "</div>" not in text and sum(0x3040 <= ord(c) <= 0x30FF for c in text) > 1000


def test_debian_doc_ja_absent_says_which_packages_to_install(monkeypatch):
    from kerasllm.data import builtin

    monkeypatch.setattr(builtin, "DEBIAN_DOC_JA", {"debian-reference-ja": "/nonexistent/*.html",
                                                   "maint-guide-ja": "/nonexistent/*.html"})
    with pytest.raises(FileNotFoundError,
                       match="sudo apt-get install -y debian-reference-ja maint-guide-ja"):
        list(corpus_documents("debian-doc-ja", split="train"))
