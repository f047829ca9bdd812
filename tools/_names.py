"""Tool names the model sees: `<server>__<tool>`, valid for OpenAI and Anthropic, unique, reversible."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

__all__ = ["MAX_NAME_LENGTH", "NAME_PATTERN", "assign_names", "sanitise"]

MAX_NAME_LENGTH = 64
"""OpenAI's and Anthropic's limit on a function/tool name."""

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""Both providers accept exactly these names."""

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_SEPARATOR = "__"
_DIGEST_LENGTH = 8


def sanitise(text: str) -> str:
    """Replace every character a provider rejects by `_`."""
    return _INVALID.sub("_", text)


def _base(server: str, tool: str) -> str:
    return (sanitise(server) + _SEPARATOR + sanitise(tool))[:MAX_NAME_LENGTH]


def _digest(server: str, tool: str, salt: int = 0) -> str:
    text = f"{server}\0{tool}\0{salt}" if salt else f"{server}\0{tool}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_LENGTH]


def _qualified(server: str, tool: str, salt: int = 0) -> str:
    suffix = "_" + _digest(server, tool, salt)
    return _base(server, tool)[: MAX_NAME_LENGTH - len(suffix)] + suffix


def assign_names(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Map a model-facing name to each `(server, tool)` pair; the result maps names back to pairs.

    A pair keeps its plain `server__tool` (sanitised, cut to 64 characters) unless another pair
    comes out the same; then every pair of that clash gets a suffix from a hash of its real
    names. So a tool's name depends only on its own names and on whether it clashes, never on
    the order servers connected or listed their tools.
    """
    unique = sorted(set(pairs))
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair in unique:
        groups[_base(*pair)].append(pair)
    names: dict[str, tuple[str, str]] = {}
    clashing: list[tuple[str, str]] = []
    for base, members in groups.items():
        if len(members) == 1:
            names[base] = members[0]
        else:
            clashing.extend(members)
    for pair in clashing:
        salt = 0
        name = _qualified(*pair)
        # A hashed name meeting another name is astronomically rare; a salted hash settles it anyway.
        while name in names:
            salt += 1
            name = _qualified(*pair, salt=salt)
        names[name] = pair
    return names
