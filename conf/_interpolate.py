"""`${NAME}` and `${NAME:-default}` interpolation of YAML values from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["interpolate"]

_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(
    value: Any,
    env: Mapping[str, str],
    path: tuple[str | int, ...] = (),
    sources: dict[tuple[str | int, ...], str] | None = None,
) -> Any:
    """Return `value` with every `${NAME}` / `${NAME:-default}` in its strings replaced.

    A `${NAME}` whose variable is unset becomes the empty string. When a string is exactly one
    reference, the variable's name is recorded in `sources` under the value's path, so that an
    error about the setting can name the variable the operator actually set.
    """
    if sources is None:
        sources = {}
    if isinstance(value, str):
        whole = _PATTERN.fullmatch(value.strip())
        if whole:
            sources[path] = whole.group(1)

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = env.get(name)
            if found is None or (found == "" and default is not None):
                return default if default is not None else ""
            return found

        return _PATTERN.sub(replace, value)
    if isinstance(value, Mapping):
        return {key: interpolate(item, env, (*path, str(key)), sources) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, (*path, index), sources) for index, item in enumerate(value)]
    return value
