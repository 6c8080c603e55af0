"""HTML and XHTML to plain text, for training: the words a reader sees.

`html_to_text` parses with lxml (libxml2's HTML parser: fast, forgiving of
broken markup, decodes every entity) and walks the tree once:

    dropped      script, style, noscript, template, head, nav, header, footer,
                 form controls, iframes, SVG: code and navigation, not prose
    blocks       p, div, li, h1-h6, tr, blockquote, ... : one paragraph each,
                 separated by a blank line
    inline       a, span, em, code, ... : joined into their paragraph; runs of
                 whitespace become one space, and a line break in the source
                 between two Japanese/Chinese characters disappears (it is
                 layout, not a space)
    pre          kept verbatim: indentation and line breaks of code survive
    br           a line break inside the paragraph

It is a small walker rather than a boilerplate remover such as trafilatura:
on documentation it keeps every paragraph and every `<pre>` block exactly,
is faster, and gives the same text on every version (docs/data.md#html-and-markdown
has the comparison).
"""

import re

# Elements whose content is not text a reader reads.
_DROPPED = frozenset(
    {
        "script", "style", "noscript", "template", "head", "title", "nav",
        "header", "footer", "form", "button", "select", "option", "textarea",
        "iframe", "object", "embed", "svg", "canvas", "audio", "video", "map",
    }
)  # fmt: skip
# Elements that start and end a paragraph.
_BLOCKS = frozenset(
    {
        "html", "body", "p", "div", "section", "article", "main", "aside",
        "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd",
        "blockquote", "table", "thead", "tbody", "tfoot", "tr", "caption",
        "figure", "figcaption", "address", "hr", "details", "summary",
        "fieldset", "legend", "center",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_BREAK = "\x00"  # stands for <br> until whitespace is collapsed
_WIDE = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"  # CJK, kana, full-width forms
_LAYOUT_BREAK = re.compile(rf"(?<=[{_WIDE}])[ \t\r\n]*\n[ \t\r\n]*(?=[{_WIDE}])")
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_AROUND_BREAK = re.compile(rf" ?{_BREAK} ?")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def html_to_text(html):
    """The readable text of an HTML or XHTML document, paragraph by paragraph.

    Args:
        html: the document, a string (or UTF-8 bytes).

    Returns:
        A string: paragraphs separated by a blank line, `<pre>` blocks
        verbatim, entities decoded; `""` when the page has no text.

    Example:

    >>> kerasllm.data.html_to_text(
    ...     "<p>吾輩は<b>猫</b>である。</p><script>x()</script><pre>  a = 1\\n</pre>")
    '吾輩は猫である。\\n\\n  a = 1'
    """
    from lxml import etree
    from lxml import html as lxml_html

    if isinstance(html, str):
        # lxml refuses str input that carries an XML encoding declaration.
        html = html.encode("utf-8")
    if not html.strip():
        return ""
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        root = lxml_html.document_fromstring(html, parser=parser)
    except (etree.ParserError, ValueError):
        return ""
    text = _Text()
    _walk(root, text)
    return text.result()


class _Text:
    """Collects paragraphs; an open paragraph gathers inline strings."""

    def __init__(self):
        self.paragraphs = []
        self.inline = []

    def add(self, string):
        self.inline.append(string)

    def end_paragraph(self):
        if not self.inline:
            return
        text = "".join(self.inline)
        self.inline = []
        text = _LAYOUT_BREAK.sub("", text)
        text = _SPACES.sub(" ", text)
        text = _AROUND_BREAK.sub(_BREAK, text).strip(" " + _BREAK)
        if text:
            self.paragraphs.append(text.replace(_BREAK, "\n"))

    def verbatim(self, string):
        self.end_paragraph()
        string = string.removeprefix("\r\n").removeprefix("\n").rstrip()
        if string.strip():
            self.paragraphs.append(string)

    def result(self):
        self.end_paragraph()
        return "\n\n".join(self.paragraphs)


def _walk(element, text):
    tag = element.tag.lower() if isinstance(element.tag, str) else None
    if tag is None or tag in _DROPPED:
        pass
    elif tag == "pre":
        text.verbatim(element.text_content())
    elif tag == "br":
        text.add(_BREAK)
    else:
        block = tag in _BLOCKS
        if block:
            text.end_paragraph()
        elif tag in _CELLS:
            text.add(" ")
        if element.text:
            text.add(element.text)
        for child in element:
            _walk(child, text)
        if block:
            text.end_paragraph()
    if element.tail:
        text.add(element.tail)


def is_html_path(path):
    """Whether a file name says HTML (`.html`, `.htm`, `.xhtml`, also `.gz`)."""
    name = path[:-3] if path.endswith(".gz") else path
    return name.lower().endswith(HTML_SUFFIXES)
