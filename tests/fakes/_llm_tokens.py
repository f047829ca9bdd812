"""Token counts and prompt caching of the fake model server, the way each provider reports them.

Tokens are estimated from characters, consistently: a request is laid out in prompt order as
segments (Anthropic: tools, system blocks, message content blocks; OpenAI: tools, messages), each
the canonical JSON of its part (`cache_control` left out, as it does not change the prompt), an
image counting by its provider's formula instead of its base64 size. A prefix of n characters is
ceil(n / 4) tokens.

Anthropic (explicit caching): a block marked `cache_control: {"type": "ephemeral"}` is a breakpoint
(at most 4). The prefix up to a breakpoint is written to the cache if it reaches the model's
minimum (1024 tokens for Sonnet/Opus-class, 2048 for Haiku; `min_tokens`), and read when an
identical prefix was written before (checked at each breakpoint and up to 20 blocks before it).
`input_tokens` is what was neither read nor written, as Anthropic reports it.

OpenAI (automatic caching): a prompt of 1024 tokens or more has its prefixes remembered in
128-token steps; `cached_tokens` is the longest remembered prefix of the new prompt (a part of
`prompt_tokens`, as OpenAI reports it).

Entries live `ttl` seconds from their last use (Anthropic 5 minutes, or 1 hour with `"ttl": "1h"`;
OpenAI 10 minutes), on the server's clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

MIN_OPENAI_CACHE = 1024
OPENAI_STEP = 128
LOOKBACK_BLOCKS = 20
MAX_BREAKPOINTS = 4


@dataclass(frozen=True, slots=True)
class FakeUsage:
    """What the server reported for one request. `input_tokens` is the whole prompt; `cache_read` and
    `cache_write` are the parts read from / written to the cache (OpenAI never writes visibly)."""

    input_tokens: int
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0

    @property
    def uncached_input(self) -> int:
        """Prompt tokens neither read from nor written to the cache (Anthropic's `input_tokens`)."""
        return self.input_tokens - self.cache_read - self.cache_write


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of a prompt in order: its text for hashing and counting, and whether it ends a breakpoint."""

    text: str
    breakpoint: bool = False
    ttl: str = "5m"


def tokens(chars: int) -> int:
    """The fake's tokenizer: four characters a token, rounded up."""
    return math.ceil(chars / 4)


def canonical(part: Any) -> str:
    """Canonical JSON of a prompt part, without `cache_control`."""
    if isinstance(part, dict):
        part = {k: v for k, v in part.items() if k != "cache_control"}
    return json.dumps(part, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def image_placeholder(digest: str, image_tokens: int) -> str:
    """Text standing for an image: distinct per image, exactly `image_tokens` tokens long."""
    return f"<image {digest}>".ljust(image_tokens * 4, ".")


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's estimate: (width * height) / 750 after scaling to fit 1568 px and ~1.15 megapixels."""
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return max(1, math.ceil((width * scale) * (height * scale) / 750))


def openai_image_tokens(width: int, height: int, detail: str) -> int:
    """OpenAI's tile formula: 85 for low detail; else fit 2048x2048, shortest side 768, 85 + 170 per 512 tile."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


class PromptCache:
    """The server's prompt cache for both providers (thread-safe)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.enabled = True
        self._entries: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every cached prefix (as if they all expired)."""
        with self._lock:
            self._entries.clear()

    def _alive(self, key: bytes, now: float) -> bool:
        expiry = self._entries.get(key)
        return expiry is not None and expiry > now

    def anthropic(self, model: str, segments: list[Segment], min_tokens: int) -> tuple[int, int, int]:
        """(prompt tokens, cache read, cache write) of an Anthropic request; records what it writes."""
        hashes, ends = _prefix_hashes(model, segments)
        total = tokens(ends[-1]) if ends else 0
        marks = [i for i, segment in enumerate(segments) if segment.breakpoint]
        if not self.enabled or not marks:
            return total, 0, 0
        now = self.clock()
        with self._lock:
            read_at = -1
            for mark in marks:
                for index in range(mark, max(-1, mark - LOOKBACK_BLOCKS - 1), -1):
                    if index > read_at and self._alive(hashes[index], now):
                        read_at = index
                        break
            write_at = -1
            for mark in marks:
                if mark > read_at and tokens(ends[mark]) >= min_tokens:
                    write_at = mark
                    self._entries[hashes[mark]] = now + _ttl_seconds(segments[mark].ttl)
            if read_at >= 0:
                # A read refreshes the entry's lifetime.
                self._entries[hashes[read_at]] = now + _ttl_seconds(segments[read_at].ttl)
        read = tokens(ends[read_at]) if read_at >= 0 else 0
        write = tokens(ends[write_at]) - read if write_at >= 0 else 0
        return total, read, write

    def openai(self, model: str, text: str, ttl: float = 600.0) -> tuple[int, int]:
        """(prompt tokens, cached tokens) of an OpenAI request's prompt (`openai_prompt`); remembers its prefixes."""
        total = tokens(len(text))
        if not self.enabled or total < MIN_OPENAI_CACHE:
            return total, 0
        digest = hashlib.sha256(f"openai|{model}|".encode())
        now = self.clock()
        cached = 0
        position = 0
        with self._lock:
            for size in range(MIN_OPENAI_CACHE, total + 1, OPENAI_STEP):
                end = size * 4
                if end > len(text):
                    break
                digest.update(text[position:end].encode())
                position = end
                key = digest.copy().digest()
                if self._alive(key, now):
                    cached = size
                self._entries[key] = now + ttl
        return total, cached


def _prefix_hashes(model: str, segments: list[Segment]) -> tuple[list[bytes], list[int]]:
    """Hash and end (in characters) of every prefix that ends at a segment boundary."""
    digest = hashlib.sha256(f"anthropic|{model}|".encode())
    hashes: list[bytes] = []
    ends: list[int] = []
    length = 0
    for segment in segments:
        digest.update(segment.text.encode())
        digest.update(b"\x1e")
        length += len(segment.text)
        hashes.append(digest.copy().digest())
        ends.append(length)
    return hashes, ends


def _ttl_seconds(ttl: str) -> float:
    return 3600.0 if ttl == "1h" else 300.0


def _substitute(value: Any, placeholders: dict[str, str]) -> Any:
    """`value` with every image replaced by its placeholder text."""
    if isinstance(value, list):
        return [_substitute(item, placeholders) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("type") == "image":
        source = value.get("source")
        data = source.get("data") if isinstance(source, dict) else None
        if isinstance(data, str) and data in placeholders:
            return placeholders[data]
    if value.get("type") == "image_url":
        image_url = value.get("image_url")
        url = image_url.get("url") if isinstance(image_url, dict) else None
        if isinstance(url, str) and url in placeholders:
            return placeholders[url]
    return {key: _substitute(item, placeholders) for key, item in value.items()}


def _marked(part: Any) -> tuple[bool, str]:
    control = part.get("cache_control") if isinstance(part, dict) else None
    if isinstance(control, dict):
        return True, str(control.get("ttl") or "5m")
    return False, "5m"


def anthropic_segments(body: dict[str, Any], placeholders: dict[str, str]) -> list[Segment]:
    """An Anthropic request in prompt order: tools, system, then each message's content blocks."""
    segments: list[Segment] = []
    for tool in body.get("tools") or ():
        segments.append(Segment(canonical(tool), *_marked(tool)))
    # A string is the same prompt as one text block holding it, as the API reads it.
    system = body.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}] if system else []
    segments += [Segment(canonical(block), *_marked(block)) for block in system or ()]
    for message in body.get("messages") or ():
        role = message.get("role", "")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content or ():
            text = _substitute(block, placeholders)
            segments.append(Segment(f"{role}|{text if isinstance(text, str) else canonical(text)}", *_marked(block)))
    return segments


def openai_prompt(body: dict[str, Any], placeholders: dict[str, str]) -> str:
    """An OpenAI chat request's prompt as the cache sees it, in order: tools, then messages."""
    tools = [canonical(tool) for tool in body.get("tools") or ()]
    return "".join(tools + [_message_text(m, placeholders) for m in body.get("messages") or ()])


def _message_text(message: Any, placeholders: dict[str, str]) -> str:
    """`canonical(_substitute(message, placeholders))`, made without sorting and dumping the message
    when it is a plain text message (the most of a long conversation): a benchmark's long history
    then costs this server little time per request."""
    if isinstance(message, dict) and message.keys() == {"role", "content"}:
        role, content = message["role"], message["content"]
        if isinstance(role, str) and isinstance(content, str):
            return f'{{"content":{_string(content)},"role":{_string(role)}}}'
    return canonical(_substitute(message, placeholders))


def _string(text: str) -> str:
    return encode_basestring(text)  # json.dumps(text, ensure_ascii=False), without its per-call set-up


def _cacheable_parts(body: dict[str, Any]) -> list[Any]:
    parts: list[Any] = list(body.get("tools") or ())
    if isinstance(body.get("system"), list):
        parts += body["system"]
    for message in body.get("messages") or ():
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            parts += message["content"]
    return parts


def count_cache_breakpoints(body: dict[str, Any]) -> int:
    """Blocks carrying `cache_control` in an Anthropic request (tools, system, messages)."""
    return sum(1 for part in _cacheable_parts(body) if isinstance(part, dict) and "cache_control" in part)


def check_cache_controls(body: dict[str, Any]) -> str | None:
    """Anthropic's refusal of a request's `cache_control` markers, or None."""
    count = count_cache_breakpoints(body)
    if count > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {count}."
    for part in _cacheable_parts(body):
        control = part.get("cache_control") if isinstance(part, dict) else None
        if control is None:
            continue
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            return "cache_control.type: Input should be 'ephemeral'"
        if control.get("ttl") not in (None, "5m", "1h"):
            return "cache_control.ttl: Input should be '5m' or '1h'"
        if part.get("type") == "text" and not str(part.get("text", "")).strip():
            return "cache_control cannot be set for empty text blocks"
    return None
