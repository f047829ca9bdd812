"""Metric values gathered over an interval, written as a few EMF lines instead of one per event.

A busy assistant makes several metric events per turn (the turn, each model and tool call); one
JSON line each, rendered and redacted, was a measurable share of a turn's CPU (issue 17). EMF takes
up to 100 values per metric in one line, and CloudWatch counts each value as a sample, so the
statistics (average, sum, percentiles, sample count) come out the same as from one line per event.

Events are grouped by their dimensions and their low-cardinality properties (`ok`, `tool`,
`reason`); high-cardinality ones (`conversation_id`) are dropped from the aggregate, since the
per-turn log line (`turn_finished`) carries them. Each line gets `samples`: the events it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["MetricBatch"]

#: Properties that would make every event a group of its own; they stay on the per-turn log lines.
UNGROUPED = frozenset({"conversation_id"})

_Key = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, Any], ...]]


class _Group:
    """The values gathered for one set of dimensions and properties."""

    __slots__ = ("samples", "units", "values")

    def __init__(self) -> None:
        self.values: dict[str, list[float | int]] = {}
        self.units: dict[str, str] = {}
        self.samples = 0


class MetricBatch:
    """Gathers metric values and hands them to `write` once per `interval_s` (by `clock`).

    `write(metrics, dimensions, properties)` gets each metric's values as a list of at most
    `per_line` values; a group with more makes several calls. `add` flushes first when the interval
    has passed; call `flush()` at the end (and from a timer, so that a quiet assistant's last
    values do not wait for the next event).
    """

    def __init__(
        self,
        write: Callable[[Mapping[str, tuple[Sequence[float | int], str]], Mapping[str, str], Mapping[str, Any]], None],
        *,
        interval_s: float,
        clock: Callable[[], float],
        per_line: int = 100,
    ) -> None:
        self._write = write
        self._interval_s = interval_s
        self._clock = clock
        self._per_line = per_line
        self._groups: dict[_Key, _Group] = {}
        self._started = clock()

    def add(
        self,
        metrics: Mapping[str, tuple[float | int | Sequence[float | int], str]],
        dimensions: Mapping[str, str],
        properties: Mapping[str, Any],
    ) -> None:
        """Gather one event's values (already checked against the EMF rules by the caller)."""
        if self._clock() - self._started >= self._interval_s:
            self.flush()
        kept = tuple(sorted((k, v) for k, v in properties.items() if k not in UNGROUPED))
        key = (tuple(dimensions.items()), kept)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        group.samples += 1
        for name, (value, unit) in metrics.items():
            values = group.values.setdefault(name, [])
            group.units[name] = unit
            if isinstance(value, int | float):
                values.append(value)
            else:
                values.extend(value)

    def flush(self) -> None:
        """Write everything gathered (a few lines), and start a new interval."""
        groups, self._groups = self._groups, {}
        self._started = self._clock()
        for (dimensions, kept), group in groups.items():
            longest = max(len(values) for values in group.values.values())
            for start in range(0, longest, self._per_line):
                metrics = {
                    name: (values[start : start + self._per_line], group.units[name])
                    for name, values in group.values.items()
                    if values[start : start + self._per_line]
                }
                self._write(metrics, dict(dimensions), {**dict(kept), "samples": group.samples})

    def __len__(self) -> int:
        """Events gathered since the last flush."""
        return sum(group.samples for group in self._groups.values())
