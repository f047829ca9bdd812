"""Markdown -> Telegram HTML conversion and splitting, checked with Telegram's HTML rules."""

from __future__ import annotations

import html

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.telegram import MAX_MESSAGE_LENGTH, html_to_plain, split_message, to_telegram_html
from channels.telegram._html import TelegramHtmlError, parse_html


def _squash(text: str) -> str:
    return "".join(text.split())


# -- conversion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold** and _it_", "<b>bold</b> and <i>it</i>"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("```python\nx = '<tag>'\n```", "<pre><code class=\"language-python\">x = '&lt;tag&gt;'\n</code></pre>"),
        ("# Title", "<b>Title</b>"),
        ("[docs](https://example.org/a_b_/c?x=1&y=2)", '<a href="https://example.org/a_b_/c?x=1&amp;y=2">docs</a>'),
        ("||secret||", '<span class="tg-spoiler">secret</span>'),
    ],
)
def test_markdown_becomes_telegram_html(markdown: str, expected: str) -> None:
    assert to_telegram_html(markdown) == expected


@pytest.mark.parametrize(
    "markdown",
    [
        "**bold _it** x_",  # overlapping emphasis: the converter emits <b><i></b></i>
        "_a **b_ c**",
        "literal </span> and <blockquote> in text",
        '[x](http://a?b="c")',
        "a <b>x</b> < c",
        "```\nunclosed fence",
        "`code ``` x`",
        "**>expandable\n>quote",
    ],
)
def test_converter_output_that_telegram_would_refuse_is_repaired(markdown: str) -> None:
    parse_html(to_telegram_html(markdown))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("ab *_~|`#>-[]()<>&\"'\n/:.xy")), max_size=120))
def test_any_markdown_converts_to_html_telegram_accepts(markdown: str) -> None:
    parse_html(to_telegram_html(markdown))


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("abc xyz\n\t.,:;?'\"/%@=$019éü你*_`~|[]()<>&#\\+!-")), max_size=60))
def test_a_text_without_markup_is_its_own_html_as_the_converter_would_make_it(text: str) -> None:
    # to_telegram_html skips the converter for such a text: it must be exactly what the converter returns.
    from channels.telegram.format import _MARKUP, _convert

    if _MARKUP.search(text) is None:
        assert to_telegram_html(text) == text == _convert(text)
    else:
        assert to_telegram_html(text) == _convert(text)


def test_html_to_plain_shows_the_visible_text_with_entities_decoded() -> None:
    assert html_to_plain("<b>a &lt;b&gt; &amp; &quot;c&quot;</b> &#128512;") == 'a <b> & "c" 😀'


def test_html_to_plain_copes_with_broken_html() -> None:
    assert html_to_plain("<b>bold <i>x</b> &lt;") == "bold x <"


# -- splitting -----------------------------------------------------------------------------------


def test_short_text_is_one_chunk_and_whitespace_only_is_none() -> None:
    assert split_message("<b>hi</b>") == ["<b>hi</b>"]
    assert split_message("<b> \n </b>") == []


def test_split_prefers_paragraph_boundaries() -> None:
    paragraphs = [f"paragraph {i} " + "word " * 30 for i in range(10)]
    chunks = split_message("\n\n".join(p.strip() for p in paragraphs), limit=500)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.startswith("paragraph ")
        assert chunk.endswith("word")
    assert _squash("".join(chunks)) == _squash("".join(paragraphs))


def test_split_falls_back_to_lines_then_spaces_then_characters() -> None:
    lines = "\n".join(f"line {i} " + "x" * 40 for i in range(20))
    assert all(chunk.startswith("line ") for chunk in split_message(lines, limit=200))
    words = " ".join(["word"] * 100)
    assert all(set(chunk.split()) == {"word"} for chunk in split_message(words, limit=50))
    unbroken = "y" * 130
    assert split_message(unbroken, limit=50) == ["y" * 50, "y" * 50, "y" * 30]


def test_a_code_block_split_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"x = {i}  # <{i}>" for i in range(400))
    text_html = to_telegram_html(f"Intro.\n\n```python\n{code}\n```\n\nOutro.")
    chunks = split_message(text_html)
    assert len(chunks) >= 3
    code_chunks = [chunk for chunk in chunks if "x = " in chunk]
    assert len(code_chunks) >= 2
    for chunk in code_chunks:
        assert chunk.startswith('<pre><code class="language-python">x = ')
        assert chunk.count("</code></pre>") == 1
        parse_html(chunk)
        assert len(chunk) <= MAX_MESSAGE_LENGTH
    assert _squash(html_to_plain("".join(chunks))) == _squash(html_to_plain(text_html))


def test_entities_and_tags_are_never_cut() -> None:
    text_html = '<a href="https://example.org/x">' + "&amp;&lt;" * 40 + "</a>"
    for limit in range(48, 120, 7):
        for chunk in split_message(text_html, limit=limit):
            parse_html(chunk)
            assert len(chunk) <= limit
            assert chunk.startswith('<a href="https://example.org/x">')


def test_tags_that_leave_no_room_for_text_are_dropped_rather_than_break_the_limit() -> None:
    text_html = '<a href="https://example.org/x">' + "&amp;" * 40 + "</a>"
    chunks = split_message(text_html, limit=36)
    assert all(len(chunk) <= 36 for chunk in chunks)
    assert "".join(parse_html(chunk) for chunk in chunks) == "&" * 40


def test_invalid_html_is_refused_by_the_splitter() -> None:
    with pytest.raises(TelegramHtmlError):
        split_message("<b>" + "x" * 5000)


# -- property: any valid HTML splits into valid chunks with the same text ------------------------

_TEXT = st.text(alphabet=st.sampled_from(list('ab c\n<>&"é😀')), min_size=0, max_size=40).map(
    lambda text: html.escape(text, quote=False)
)
_OPEN_TAGS = st.sampled_from(
    [
        ("b", "<b>"),
        ("i", "<i>"),
        ("u", "<u>"),
        ("s", "<s>"),
        ("tg-spoiler", "<tg-spoiler>"),
        ("span", '<span class="tg-spoiler">'),
        ("a", '<a href="https://example.org/?q=1&amp;r=2">'),
        ("code", "<code>"),
        ("blockquote", "<blockquote expandable>"),
        ("pre", "<pre>"),
    ]
)


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(_OPEN_TAGS, st.lists(children, max_size=4)).map(
        lambda parts: parts[0][1] + "".join(parts[1]) + f"</{parts[0][0]}>"
    )


_HTML = st.recursive(_TEXT, _element, max_leaves=25).map(str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_HTML, min_size=1, max_size=12).map("".join), st.integers(min_value=40, max_value=400))
def test_every_chunk_is_valid_within_the_limit_and_the_text_is_kept(text_html: str, limit: int) -> None:
    chunks = split_message(text_html, limit=limit)
    for chunk in chunks:
        visible = parse_html(chunk)
        assert len(chunk) <= limit
        assert visible.strip()
    assert _squash("".join(parse_html(chunk) for chunk in chunks)) == _squash(parse_html(text_html))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["word", "**bold**", "`x<y`", "\n", "\n\n", "```py\nz=1\n```", "_i_"]), max_size=2000))
def test_long_markdown_splits_into_telegram_sized_valid_chunks(parts: list[str]) -> None:
    text_html = to_telegram_html(" ".join(parts))
    for chunk in split_message(text_html):
        assert len(parse_html(chunk)) <= MAX_MESSAGE_LENGTH
        assert len(chunk) <= MAX_MESSAGE_LENGTH
