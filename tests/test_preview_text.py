"""The preview of a growing Markdown answer: valid Telegram HTML at every point, converted block by block."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.telegram import _preview_text
from channels.telegram._html import parse_html
from channels.telegram._preview_text import PreviewText

DOCUMENT = (
    "# Plan\n\nSome **bold** and _italic_ text with `code` and a [link](https://example.com/a_b_c).\n\n"
    "```python\ndef f(a, b):\n\n    return a < b and b > 0\n```\n\n"
    "- one\n- two **strong**\n\n> a quote & more\n\nThe end <b>not a tag</b>."
)


def test_every_prefix_of_an_answer_previews_as_html_telegram_accepts() -> None:
    preview = PreviewText()
    for end in range(1, len(DOCUMENT) + 1):
        for chunk in preview.chunks(DOCUMENT[:end]):
            parse_html(chunk)  # raises what Telegram would refuse
            assert len(chunk) <= 4096


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(["**", "_", "`", "```", "\n", "\n\n", "<", ">", "&", "[x](", ")", "~~", "||", "word ", "# "]),
        max_size=60,
    ),
    st.integers(min_value=1, max_value=12),
)
def test_any_partial_markdown_previews_as_valid_html(pieces: list[str], step: int) -> None:
    text = "".join(pieces)
    preview = PreviewText(limit=64)
    for end in range(0, len(text) + 1, step):
        for chunk in preview.chunks(text[:end]):
            parse_html(chunk)
            assert len(chunk) <= 64


def test_an_open_code_fence_is_closed_for_the_preview() -> None:
    [chunk] = PreviewText().chunks("Look:\n\n```python\nif a < b:\n    print(a)")
    assert "<pre>" in chunk or "<pre><code" in chunk
    assert "```" not in chunk
    assert "if a &lt; b:" in chunk


def test_finished_blocks_are_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # What is converted is the point of this test, so the converter is wrapped to count its input.
    calls: list[str] = []
    original = _preview_text.to_telegram_html

    def counting(markdown: str) -> str:
        calls.append(markdown)
        return original(markdown)

    monkeypatch.setattr(_preview_text, "to_telegram_html", counting)
    preview = PreviewText()
    text = ""
    for index in range(30):
        text += f"Paragraph {index} has a few words.\n\n"
        preview.chunks(text)
    converted = "".join(calls)
    assert converted.count("Paragraph 0 ") == 1  # finished blocks are kept, not converted again
    assert len(converted) < 3 * len(text)


def test_a_blank_line_inside_a_code_fence_does_not_end_the_block() -> None:
    preview = PreviewText()
    chunks = preview.chunks("```\nfirst\n\nsecond\n```\n\nafter")
    [chunk] = chunks
    assert chunk.count("<pre") == 1
    assert "first\n\nsecond" in chunk


def test_chunks_hold_whole_blocks_within_the_limit_and_grow_by_messages() -> None:
    preview = PreviewText(limit=100)
    text = "".join(f"block {index} " + "x" * 40 + "\n\n" for index in range(6))
    counts = [len(preview.chunks(text[:end])) for end in range(1, len(text) + 1)]
    assert counts == sorted(counts)  # messages are only ever added
    final = preview.chunks(text)
    assert len(final) == 3
    assert all(chunk.startswith("block") and len(chunk) <= 100 for chunk in final)


def test_a_text_written_anew_is_previewed_afresh() -> None:
    preview = PreviewText()
    assert preview.chunks("First try, paragraph one.\n\nAnd two") == ["First try, paragraph one.\n\nAnd two"]
    assert preview.chunks("Second") == ["Second"]


def test_plain_previews_show_the_visible_text_only() -> None:
    preview = PreviewText()
    preview.plain = True
    assert preview.chunks("Some **bold** & <more>") == ["Some bold & <more>"]
