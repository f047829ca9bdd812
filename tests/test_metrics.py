"""Metrics lines are valid CloudWatch Embedded Metric Format, checked against the specification."""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from conf.settings import LogSettings, MetricsSettings
from ops import logs
from ops.logs import configure_logging
from ops.metrics import Metrics, MetricsError

# The specification's rules, written out here independently of actors/metrics.py.
SPEC_UNITS = {
    *["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes"],
    *["Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "None"],
    *(f"{size}/Second" for size in ["Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes"]),
    *(f"{size}/Second" for size in ["Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Count"]),
}
NOW = 1_735_732_800.123  # 2025-01-01T12:00:00.123Z


def check_emf(line: dict[str, Any]) -> None:
    """Assert that a parsed log line is an EMF document CloudWatch will accept."""
    aws = line["_aws"]
    assert isinstance(aws, dict)
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    timestamp = aws["Timestamp"]
    assert isinstance(timestamp, int)
    assert not isinstance(timestamp, bool)
    assert 10**12 < timestamp < 10**13, "Timestamp is milliseconds since the epoch"
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        namespace = directive["Namespace"]
        assert isinstance(namespace, str)
        assert 1 <= len(namespace) <= 255
        assert isinstance(directive["Dimensions"], list)
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list)
            assert len(dimension_set) <= 30
            for name in dimension_set:
                value = line[name]  # every referenced member is at the root
                assert isinstance(value, str)
                assert value.strip()
                assert value.isascii()
                assert len(value) <= 1024
        metrics = directive["Metrics"]
        assert isinstance(metrics, list)
        assert 1 <= len(metrics) <= 100
        for definition in metrics:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            name = definition["Name"]
            assert isinstance(name, str)
            assert 1 <= len(name) <= 255
            assert definition.get("Unit", "None") in SPEC_UNITS
            value = line[name]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            for item in values:
                assert isinstance(item, int | float)
                assert not isinstance(item, bool)
                assert math.isfinite(item)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root_level = logging.getLogger().level
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    out = io.StringIO()
    # WARNING: metrics must still come out when the log level hides INFO lines.
    configure_logging(LogSettings(level="WARNING"), stream=out)
    yield out
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().setLevel(root_level)
    for name in (*logs.NOISY_LOGGERS, logs.METRICS_LOGGER_NAME):
        logging.getLogger(name).setLevel(logging.NOTSET)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def metrics(namespace: str = "PersonalAssistant", enabled: bool = True) -> Metrics:
    return Metrics(MetricsSettings(namespace=namespace, service="assistant", enabled=enabled), clock=lambda: NOW)


def directive(line: dict[str, Any]) -> dict[str, Any]:
    [only] = line["_aws"]["CloudWatchMetrics"]
    return only  # type: ignore[no-any-return]


def test_a_turn_is_one_valid_emf_line_with_conversation_id_as_a_property(stream: io.StringIO) -> None:
    metrics().turn(812.4, conversation_id="-100123", steps=3, ok=False)
    [line] = parsed(stream)
    check_emf(line)
    assert line["event"] == "metrics"
    assert line["_aws"]["Timestamp"] == 1_735_732_800_123
    emf = directive(line)
    assert emf["Namespace"] == "PersonalAssistant"
    assert emf["Dimensions"] == [["Service"]]
    assert {m["Name"]: m["Unit"] for m in emf["Metrics"]} == {
        "TurnLatency": "Milliseconds",
        "TurnSteps": "Count",
        "TurnErrors": "Count",
    }
    assert (line["TurnLatency"], line["TurnSteps"], line["TurnErrors"]) == (812.4, 3, 1)
    assert line["conversation_id"] == "-100123"
    assert all("conversation_id" not in dims for dims in emf["Dimensions"])


def test_a_turn_reports_the_time_to_its_first_visible_text_when_it_is_known(stream: io.StringIO) -> None:
    metrics().turn(5200.0, conversation_id="42", steps=1, ok=True, first_text_ms=1130.5)
    [line] = parsed(stream)
    check_emf(line)
    assert {m["Name"]: m["Unit"] for m in directive(line)["Metrics"]}["TimeToFirstText"] == "Milliseconds"
    assert line["TimeToFirstText"] == 1130.5


@pytest.mark.parametrize(
    ("call", "dimensions", "values"),
    [
        (
            lambda m: m.model_call(950, ok=True, provider="openai"),
            ["Service", "Provider"],
            {"ModelLatency": 950.0, "ModelErrors": 0},
        ),
        (
            lambda m: m.tool_call(12.5, ok=False, server="time", tool="get_current_time"),
            ["Service", "Server"],
            {"ToolLatency": 12.5, "ToolErrors": 1},
        ),
        (
            lambda m: m.telegram_retry(3, method="sendMessage", reason="flood_control"),
            ["Service", "Method"],
            {"TelegramRetries": 1, "TelegramRetryWait": 3.0},
        ),
        (lambda m: m.actors_alive(4), ["Service"], {"ActorsAlive": 4}),
        (
            lambda m: m.turn_usage(
                input_tokens=1200,
                output_tokens=80,
                cache_read_tokens=1000,
                cache_write_tokens=150,
                cost_usd=0.0031,
                model="claude-sonnet-5",
                conversation_id="42",
            ),
            ["Service", "Model"],
            {
                "TurnInputTokens": 1200,
                "TurnOutputTokens": 80,
                "TurnCacheReadTokens": 1000,
                "TurnCacheWriteTokens": 150,
                "TurnCost": 0.0031,
            },
        ),
        (lambda m: m.mailbox_depth(7, actor_kind="conversation"), ["Service", "ActorKind"], {"MailboxDepth": 7}),
    ],
)
def test_every_named_metric_is_valid_emf_with_low_cardinality_dimensions(
    stream: io.StringIO, call: Any, dimensions: list[str], values: dict[str, float]
) -> None:
    call(metrics())
    [line] = parsed(stream)
    check_emf(line)
    assert directive(line)["Dimensions"] == [dimensions]
    assert line["Service"] == "assistant"
    assert {name: line[name] for name in values} == values


def test_the_tool_name_is_a_property_not_a_dimension(stream: io.StringIO) -> None:
    metrics().tool_call(1, ok=True, server="search", tool="web_search")
    [line] = parsed(stream)
    assert line["tool"] == "web_search"
    assert "tool" not in directive(line)["Dimensions"][0]


def test_the_running_turns_context_rides_along_as_properties(stream: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(conversation_id="42", update_id=7):
        metrics().model_call(100, ok=True, provider="anthropic")
    [line] = parsed(stream)
    check_emf(line)
    assert (line["conversation_id"], line["update_id"]) == ("42", 7)


def test_dimension_values_are_made_ascii_and_non_blank(stream: io.StringIO) -> None:
    metrics().tool_call(1, ok=True, server="météo\n", tool="x")
    metrics().mailbox_depth(1, actor_kind="  ")
    first, second = parsed(stream)
    check_emf(first)
    check_emf(second)
    assert first["Server"] == "m?t?o?"
    assert second["ActorKind"] == "unknown"


def test_emit_accepts_value_arrays_up_to_the_limit(stream: io.StringIO) -> None:
    metrics().emit({"Samples": ([1.5] * 100, "Milliseconds")}, {"Stage": "load"}, run="r1")
    [line] = parsed(stream)
    check_emf(line)
    assert line["Samples"] == [1.5] * 100
    assert directive(line)["Dimensions"] == [["Service", "Stage"]]


@pytest.mark.parametrize(
    ("metric_values", "dimensions", "properties", "member"),
    [
        ({f"M{i}": (1, "Count") for i in range(101)}, {}, {}, "metrics"),
        ({}, {}, {}, "metrics"),
        ({"M": (1, "Count")}, {f"D{i}": "x" for i in range(30)}, {}, "dimensions"),  # 30 + Service
        ({"M": (1, "Furlongs")}, {}, {}, "M"),
        ({"M": (math.nan, "Count")}, {}, {}, "M"),
        ({"M": (True, "Count")}, {}, {}, "M"),
        ({"M": ([1] * 101, "Count")}, {}, {}, "M"),
        ({"M": ([], "Count")}, {}, {}, "M"),
        ({"M": (1, "Count")}, {"Stage": 3}, {}, "Stage"),
        ({"M": (1, "Count")}, {"Stage": ""}, {}, "Stage"),
        ({"M": (1, "Count")}, {"Stage": "caf\u00e9"}, {}, "Stage"),
        ({"M": (1, "Count")}, {"Stage": "a\nb"}, {}, "Stage"),
        ({"M": (1, "Count")}, {"M": "x"}, {}, "M"),
        ({"M": (1, "Count")}, {}, {"Service": "other"}, "Service"),
        ({"event": (1, "Count")}, {}, {}, "event"),
    ],
)
def test_emit_refuses_what_the_specification_forbids(
    stream: io.StringIO, metric_values: Any, dimensions: Any, properties: Any, member: str
) -> None:
    with pytest.raises(MetricsError) as caught:
        metrics().emit(metric_values, dimensions, **properties)
    assert caught.value.member == member
    assert stream.getvalue() == ""


def test_an_aws_namespace_is_refused() -> None:
    with pytest.raises(MetricsError):
        metrics(namespace="AWS/Lambda")


def test_disabled_metrics_write_nothing_and_check_nothing(stream: io.StringIO) -> None:
    off = metrics(enabled=False)
    off.turn(1, conversation_id="1", steps=1, ok=True)
    off.model_call(1, ok=True, provider="openai")
    off.tool_call(1, ok=True, server="s", tool="t")
    off.telegram_retry(1, method="sendMessage", reason="x")
    off.actors_alive(1)
    off.mailbox_depth(1, actor_kind="conversation")
    off.turn_usage(
        input_tokens=1,
        output_tokens=1,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cost_usd=0,
        model="m",
        conversation_id="1",
    )
    off.emit({"M": (math.nan, "Furlongs")})  # would be refused if enabled
    assert stream.getvalue() == ""


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,20}\Z"), min_size=1, max_size=5, unique=True),
    value=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.integers(-(2**31), 2**31),
        st.lists(st.floats(min_value=0, max_value=1e9), min_size=1, max_size=100),
    ),
    unit=st.sampled_from(sorted(SPEC_UNITS)),
    dimension=st.text(min_size=1, max_size=30),
)
def test_whatever_emit_accepts_is_valid_emf(names: list[str], value: Any, unit: str, dimension: str) -> None:
    out = io.StringIO()
    logs._reset_for_tests()
    try:
        configure_logging(LogSettings(), stream=out)
        emitted = metrics()
        try:
            emitted.emit({name: (value, unit) for name in names}, {"Stage": dimension})
        except MetricsError:
            printable = dimension.strip() and all(" " <= char <= "~" for char in dimension)
            assert not printable or "Stage" in names or "Service" in names
            return
        [line] = parsed(out)
        check_emf(line)
    finally:
        logs._reset_for_tests()
        for name in (*logs.NOISY_LOGGERS, logs.METRICS_LOGGER_NAME):
            logging.getLogger(name).setLevel(logging.NOTSET)
