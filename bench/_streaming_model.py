"""The fake model of bench/streaming.py: answers of a given length, paced like a real model.

It runs in a subprocess of its own (so that streaming tens of thousands of deltas does not share
the benchmark's GIL with the fake Bot API), and prints one line per answer, `ANSWERED <first text>
<last text> <user text>`, the moments its first and last text went out (`time.monotonic()`: one
clock for every process on the machine). A busy machine makes the model late; measuring from
these moments keeps that out of the assistant's figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where bench/telegram.py would
# shadow python-telegram-bot's `telegram` package: put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from tests.fakes.llm_server import FakeLLMRequest, FakeLLMServer, Reply  # noqa: E402

FIRST_TOKEN_S = 1.0
CHARS_PER_SECOND = 300.0


def answer_text(size: int) -> str:
    """A Markdown answer of exactly `size` characters: paragraphs with a little formatting."""
    sentence = "The model writes **this** answer word by word, as models do. "
    paragraphs: list[str] = []
    total = 0
    while total < size:
        paragraph = (sentence * 5).strip()
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    text = "\n\n".join(paragraphs)[:size]
    return text[:-1] + "."


def handler(request: FakeLLMRequest) -> Reply:
    """`bench <size> <chat>` gets an answer of `size` characters, paced; anything else `ok` at once."""
    words = request.last_user_text.split()
    if len(words) >= 3 and words[-3] == "bench":
        return Reply(answer_text(int(words[-2])), first_token_delay=FIRST_TOKEN_S, chars_per_second=CHARS_PER_SECOND)
    return Reply("ok")


def main() -> None:
    """Serve until stdin closes."""
    with FakeLLMServer() as llm:
        llm.script(handler)
        llm.on_answered = lambda request: print(
            "ANSWERED", request.first_text_at, request.last_text_at, request.last_user_text, flush=True
        )
        print(llm.openai_base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
