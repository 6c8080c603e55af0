"""HTML / XHTML to text: on strings, and on real pages Debian packages install."""

import glob
import re
import json
import os

import pytest

from kerasllm.data import html_to_text, read_documents


def test_scripts_styles_and_navigation_go_paragraphs_and_pre_stay():
    page = """<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style>
    <script>var x = "<p>not text</p>";</script></head><body>
    <nav><a href="/">ホーム</a> | <a href="/a">概要</a></nav>
    <h1>見出し &amp; タイトル</h1>
    <p>吾輩は<b>猫</b>である。
    名前はまだ無い。</p>
    <p>Hello,   <em>world</em>&nbsp;&lt;ok&gt;</p>
    <ul><li>一つ目</li><li>二つ目<br>続き</li></ul>
    <pre>  def f(x):
        return x  # &lt;keep&gt;
</pre><footer>© 2024</footer><!-- comment --></body></html>"""
    assert html_to_text(page) == (
        "見出し & タイトル\n\n吾輩は猫である。名前はまだ無い。\n\n"
        "Hello, world\xa0<ok>\n\n一つ目\n\n二つ目\n続き\n\n"
        "  def f(x):\n        return x  # <keep>"
    )


def test_xhtml_with_an_xml_declaration_and_empty_pages():
    xhtml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>日本語の段落。</p></body></html>'
    )
    assert html_to_text(xhtml) == "日本語の段落。"
    assert html_to_text("") == "" and html_to_text("<script>x</script>") == ""


def test_reader_extracts_html_files_and_jsonl_fields_and_keeps_markdown(tmp_path):
    (tmp_path / "a.html").write_text("<p>段落一。</p><p>段落二。</p>", encoding="utf-8")
    (tmp_path / "b.md").write_text("# 見出し\n\n*強調* と `code`\n", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"text": "<p>JSON の <b>HTML</b></p>"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    docs = list(read_documents(str(tmp_path)))
    assert docs == ["段落一。\n\n段落二。", "# 見出し\n\n*強調* と `code`\n",
                    "<p>JSON の <b>HTML</b></p>"]
    assert list(read_documents(str(tmp_path / "c.jsonl"), html="always")) == ["JSON の HTML"]
    assert list(read_documents(str(tmp_path / "a.html"), text_unit="paragraph")) == [
        "段落一。", "段落二。"
    ]
    assert list(read_documents(str(tmp_path / "a.html"), html="never"))[0].startswith("<p>")


_DEBIAN_PAGES = sorted(
    glob.glob("/usr/share/doc/maint-guide-ja/html/*.ja.html")
    + glob.glob("/usr/share/debian-reference/*.ja.html")
)


@pytest.mark.skipif(
    not _DEBIAN_PAGES,
    reason="needs the Debian packages maint-guide-ja / debian-reference-ja "
    "(apt-get install maint-guide-ja debian-reference-ja)",
)
def test_real_debian_pages_keep_prose_and_every_code_block_verbatim():
    from lxml import html as lxml_html

    for path in _DEBIAN_PAGES[:6]:
        with open(path, "rb") as f:
            raw = f.read()
        text = html_to_text(raw)
        assert not re.search(r"</?(div|span|p|a|pre|td|li)\b|&(amp|lt|gt|nbsp);", text), path
        assert sum(0x3040 <= ord(c) <= 0x30FF for c in text) > 100, path  # kana: Japanese prose
        for pre in lxml_html.document_fromstring(raw).iter("pre"):
            block = pre.text_content().strip("\n").rstrip()
            if block.strip():
                assert block in text, (path, block[:80])
    assert os.path.getsize(_DEBIAN_PAGES[0]) > len(html_to_text(open(_DEBIAN_PAGES[0], "rb").read()))
