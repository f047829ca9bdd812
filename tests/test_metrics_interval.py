"""Metrics gathered per interval: a few valid EMF lines a minute, with every value of every event."""

from __future__ import annotations

import io

import pytest

from conf.settings import MetricsSettings
from ops.metrics import Metrics, MetricsError
from tests.test_metrics import NOW, check_emf, parsed
from tests.test_metrics import stream as stream  # the fixture


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def minute_metrics(clock: Clock) -> Metrics:
    return Metrics(MetricsSettings(), clock=clock, interval_s=60)


def test_turns_within_a_minute_are_one_line_written_when_the_minute_is_over(stream: io.StringIO, clock: Clock) -> None:
    metrics = minute_metrics(clock)
    for latency, ok in ((100.0, True), (250.0, True), (400.0, True)):
        metrics.turn(latency, conversation_id=str(latency), steps=1, ok=ok)
    assert parsed(stream) == []
    clock.now += 60
    metrics.model_call(5, ok=True, provider="openai")  # the next event finds the minute over
    [line] = parsed(stream)
    check_emf(line)
    assert line["TurnLatency"] == [100.0, 250.0, 400.0]
    assert line["TurnErrors"] == [0, 0, 0]
    assert line["samples"] == 3
    assert "conversation_id" not in line  # on the turn's own log line, not in the aggregate
    metrics.flush()
    [_, model] = parsed(stream)
    assert (model["ModelLatency"], model["Provider"], model["samples"]) == ([5], "openai", 1)


def test_events_of_different_dimensions_or_outcomes_are_lines_of_their_own(stream: io.StringIO, clock: Clock) -> None:
    metrics = minute_metrics(clock)
    metrics.model_call(10, ok=True, provider="openai")
    metrics.model_call(20, ok=False, provider="openai")
    metrics.model_call(30, ok=True, provider="anthropic")
    metrics.tool_call(40, ok=True, server="time", tool="now")
    metrics.flush()
    lines = parsed(stream)
    for line in lines:
        check_emf(line)
    seen = {
        (line.get("Provider") or line.get("Server"), line["ok"], *line.get("ModelLatency", line.get("ToolLatency")))
        for line in lines
    }
    assert seen == {("openai", True, 10), ("openai", False, 20), ("anthropic", True, 30), ("time", True, 40)}


def test_more_than_a_hundred_values_are_split_over_lines(stream: io.StringIO, clock: Clock) -> None:
    metrics = minute_metrics(clock)
    for i in range(250):
        metrics.turn(float(i), conversation_id="1", steps=1, ok=True)
    metrics.flush()
    lines = parsed(stream)
    for line in lines:
        check_emf(line)
    assert [len(line["TurnLatency"]) for line in lines] == [100, 100, 50]
    assert [value for line in lines for value in line["TurnLatency"]] == [float(i) for i in range(250)]


def test_a_value_that_breaks_the_format_is_refused_when_reported(stream: io.StringIO, clock: Clock) -> None:
    metrics = minute_metrics(clock)
    with pytest.raises(MetricsError):
        metrics.emit({"Latency": (float("nan"), "Milliseconds")})
    metrics.flush()
    assert parsed(stream) == []


def test_a_flush_with_nothing_gathered_writes_nothing(stream: io.StringIO, clock: Clock) -> None:
    metrics = minute_metrics(clock)
    metrics.flush()
    clock.now += 600
    metrics.flush()
    assert parsed(stream) == []


def test_without_an_interval_every_event_is_a_line_at_once(stream: io.StringIO, clock: Clock) -> None:
    metrics = Metrics(MetricsSettings(), clock=clock)
    metrics.turn(1.0, conversation_id="7", steps=1, ok=True)
    [line] = parsed(stream)
    assert (line["TurnLatency"], line["conversation_id"]) == (1.0, "7")


def test_a_shape_seen_before_still_has_its_values_checked_and_a_new_one_all_of_it(clock: Clock) -> None:
    metrics = minute_metrics(clock)
    metrics.emit({"Latency": (5.0, "Milliseconds")}, {"Provider": "openai"})
    with pytest.raises(MetricsError):
        metrics.emit({"Latency": (float("nan"), "Milliseconds")}, {"Provider": "openai"})
    with pytest.raises(MetricsError):
        metrics.emit({"Latency": (5.0, "Milliseconds")}, {"Provider": "\x00"})  # a new dimension value
    with pytest.raises(MetricsError):
        metrics.emit({"Latency": (5.0, "Fortnights")}, {"Provider": "openai"})
