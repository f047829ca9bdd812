"""llm._sse: server-sent events split from the bytes of each read, however the reads cut them."""

from __future__ import annotations

from llm._sse import SseDecoder


def test_all_the_events_of_one_read_come_together() -> None:
    decoder = SseDecoder()
    events = decoder.feed(b'data: {"a": 1}\n\nevent: ping\ndata: {}\n\n: a comment\ndata: [DONE]\n\n')
    assert events == [("", '{"a": 1}'), ("ping", "{}"), ("", "[DONE]")]
    assert decoder.finish() == []


def test_an_event_cut_across_reads_comes_whole_once_its_blank_line_arrives() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: message_delta\r") == []  # its LF may be in the next read
    assert decoder.feed(b'\ndata: {"text": "caf\xc3') == []  # a character cut in two as well
    assert decoder.feed(b'\xa9"}\r\n') == []
    assert decoder.feed(b"\r\n") == [("message_delta", '{"text": "café"}')]


def test_data_lines_join_with_newlines_and_cr_alone_ends_a_line() -> None:
    decoder = SseDecoder()
    # The last CR waits for the next read (or the end): it may be the first half of a CRLF.
    assert decoder.feed(b"data:one\rdata: two\r\r") == []
    assert decoder.feed(b"data: three\r\r") == [("", "one\ntwo")]
    assert decoder.finish() == [("", "three")]


def test_an_event_without_its_blank_line_at_the_end_is_dropped() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: complete\n\ndata: cut") == [("", "complete")]
    assert decoder.finish() == []
