"""Metrics as CloudWatch Embedded Metric Format (EMF) log lines: CloudWatch graphs them, no agent.

Each call writes one JSON line with a root `_aws` object that tells CloudWatch Logs which members
are metrics (with their units) and which are dimensions; every other member (`conversation_id`,
`ok`, `tool`, ...) is a property, searchable in Logs Insights but not a metric dimension::

    {"timestamp": "...", "level": "info", "event": "metrics", "logger": "assistant.metrics",
     "_aws": {"Timestamp": 1735732800000, "CloudWatchMetrics": [{"Namespace": "PersonalAssistant",
              "Dimensions": [["Service"]], "Metrics": [{"Name": "TurnLatency", "Unit": "Milliseconds"}, ...]}]},
     "Service": "assistant", "TurnLatency": 812.4, "TurnSteps": 2, "TurnErrors": 0,
     "conversation_id": "42", "ok": true}

How lines are written: through the JSON log pipeline (ops/logs.py), on the logger
`assistant.metrics`, which stays at INFO whatever LOG_LEVEL says. CloudWatch extracts metrics
from any JSON log event that has `_aws`, so the extra log keys are harmless properties, and the
line gets the same redaction, context (`conversation_id` of the running turn) and single writer
as every other line; a dedicated stdout writer would interleave with the log handler's lines.

Dimensions stay low-cardinality on purpose: every distinct set of dimension values is a custom
metric that CloudWatch bills monthly. `conversation_id` and tool names are properties; the
dimensions are Service plus Provider, Model, Server, Method or ActorKind.

With `interval_s` (the assistant runs with `metrics.interval_seconds`, a minute), events are
gathered and written once per interval, up to 100 values per metric per line (ops/_metric_batch.py):
a few lines a minute instead of several per turn, with the same CloudWatch statistics. Without it,
each event is a line of its own (tests, tools).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from conf.settings import MetricsSettings
from ops._metric_batch import MetricBatch
from ops.logs import METRICS_LOGGER_NAME

__all__ = [
    "MAX_DIMENSIONS_PER_SET",
    "MAX_METRICS_PER_DIRECTIVE",
    "MAX_VALUES_PER_METRIC",
    "UNITS",
    "Metrics",
    "MetricsError",
    "dimension_value",
]

#: Units CloudWatch accepts (the StandardUnit list).
UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)

# Limits of the EMF specification.
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_VALUES_PER_METRIC = 100
_MAX_NAME_LENGTH = 255
_MAX_DIMENSION_VALUE_LENGTH = 1024

# Keys the log pipeline adds to every line; a metric, dimension or property must not shadow them.
_RESERVED = frozenset({"_aws", "timestamp", "level", "event", "logger"})

MetricValue = float | int | Sequence[float | int]


class MetricsError(ValueError):
    """A metric, dimension or property breaks the EMF specification (a programming error).

    `member` names the offending key.
    """

    def __init__(self, member: str, problem: str) -> None:
        super().__init__(f"{member}: {problem}")
        self.member = member
        self.problem = problem


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME_LENGTH:
        raise MetricsError(
            str(name), f"{kind} name must be a non-blank string of at most {_MAX_NAME_LENGTH} characters"
        )
    if name in _RESERVED:
        raise MetricsError(name, f"{kind} name is reserved by the log line")


_SHAPES_HELD = 256


def _check_value(name: str, value: object) -> None:
    values = value if isinstance(value, list | tuple) else [value]
    if not values or len(values) > MAX_VALUES_PER_METRIC:
        raise MetricsError(name, f"a metric carries 1 to {MAX_VALUES_PER_METRIC} values")
    for item in values:
        # bool is an int to Python but not a number to JSON; NaN and infinities are not JSON.
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise MetricsError(name, f"metric value {item!r} is not a finite number")


def _valid_dimension_value(value: object) -> bool:
    # CloudWatch accepts ASCII without control characters, 1 to 1024 characters, not all blank.
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_DIMENSION_VALUE_LENGTH
        and bool(value.strip())
        and all(" " <= char <= "~" for char in value)
    )


def dimension_value(raw: object) -> str:
    """A safe dimension value: printable ASCII, 1 to 1024 characters ("unknown" if blank)."""
    text = "".join(char if " " <= char <= "~" else "?" for char in str(raw)).strip()
    return text[:_MAX_DIMENSION_VALUE_LENGTH] or "unknown"


class Metrics:
    """Writes EMF lines for the assistant's metrics; a disabled instance does nothing, cheaply.

    The named methods (`turn`, `model_call`, ...) always produce valid lines; `emit` checks its
    arguments against the specification and raises `MetricsError` on a violation.
    """

    def __init__(
        self, settings: MetricsSettings, *, clock: Callable[[], float] = time.time, interval_s: float = 0.0
    ) -> None:
        if settings.enabled:
            _check_name("namespace", settings.namespace)
            if settings.namespace.startswith("AWS/"):
                raise MetricsError(settings.namespace, "the AWS/ namespaces belong to AWS services")
        self.enabled = settings.enabled
        self.namespace = settings.namespace
        self.service = dimension_value(settings.service)
        self._clock = clock
        self._log = structlog.get_logger(METRICS_LOGGER_NAME)
        self._batch = MetricBatch(self._write_now, interval_s=interval_s, clock=clock) if interval_s > 0 else None
        self._checked: set[tuple[Any, ...]] = set()
        """Shapes (names, units, dimensions, property names) `_document` accepted: a turn's metrics
        have the same few shapes every time, so only their values are checked again."""

    def emit(
        self,
        metrics: Mapping[str, tuple[MetricValue, str]],
        dimensions: Mapping[str, str] | None = None,
        **properties: Any,
    ) -> None:
        """Write one EMF line: `metrics` maps a name to (value or values, unit).

        `Service` is added to `dimensions`; all dimensions form one dimension set. `properties`
        become plain members of the line (high-cardinality data such as `conversation_id`).
        Raises MetricsError if a name, value, unit or count breaks the specification.
        """
        if not self.enabled:
            return
        dims = {"Service": self.service, **(dimensions or {})}
        if self._batch is None:
            self._write_now(metrics, dims, properties)
            return
        self._check(metrics, dims, properties)  # now, where the caller can see the error
        self._batch.add(metrics, dims, properties)

    def flush(self) -> None:
        """Write the values gathered in this interval now (at a timer's tick, and when stopping)."""
        if self._batch is not None:
            self._batch.flush()

    def _check(
        self, metrics: Mapping[str, tuple[MetricValue, str]], dims: Mapping[str, str], properties: Mapping[str, Any]
    ) -> None:
        shape = (tuple((name, unit) for name, (_, unit) in metrics.items()), tuple(dims.items()), tuple(properties))
        if shape not in self._checked:
            self._document(metrics, dims, properties)
            if len(self._checked) < _SHAPES_HELD:
                self._checked.add(shape)
            return
        for name, (value, _) in metrics.items():
            _check_value(name, value)

    def _write_now(
        self, metrics: Mapping[str, tuple[MetricValue, str]], dims: Mapping[str, str], properties: Mapping[str, Any]
    ) -> None:
        self._write(self._document(metrics, dims, properties))

    def _document(
        self, metrics: Mapping[str, tuple[MetricValue, str]], dims: Mapping[str, str], properties: Mapping[str, Any]
    ) -> dict[str, Any]:
        if not 1 <= len(metrics) <= MAX_METRICS_PER_DIRECTIVE:
            raise MetricsError("metrics", f"a line carries 1 to {MAX_METRICS_PER_DIRECTIVE} metrics")
        if len(dims) > MAX_DIMENSIONS_PER_SET:
            raise MetricsError("dimensions", f"a dimension set has at most {MAX_DIMENSIONS_PER_SET} dimensions")
        document: dict[str, Any] = {}
        definitions = []
        for name, (value, unit) in metrics.items():
            _check_name("metric", name)
            _check_value(name, value)
            if unit not in UNITS:
                raise MetricsError(name, f"unit {unit!r} is not a CloudWatch unit")
            definitions.append({"Name": name, "Unit": unit})
            document[name] = list(value) if isinstance(value, list | tuple) else value
        for name, dim_value in dims.items():
            _check_name("dimension", name)
            if name in document:
                raise MetricsError(name, "is both a metric and a dimension")
            if not _valid_dimension_value(dim_value):
                raise MetricsError(name, "dimension value must be a non-blank string of printable ASCII")
            document[name] = dim_value
        for name, prop in properties.items():
            if name in document or name in _RESERVED:
                raise MetricsError(name, "property shadows a metric, a dimension or a log key")
            document[name] = prop
        document["_aws"] = {
            "Timestamp": int(self._clock() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": self.namespace, "Dimensions": [list(dims)], "Metrics": definitions},
            ],
        }
        return document

    def _write(self, document: dict[str, Any]) -> None:
        self._log.info("metrics", **document)

    # The metrics the actors report. Errors are 0/1 counts beside the latency, so one line gives
    # both the error rate (Average) and the error count (Sum).

    def turn(
        self, latency_ms: float, *, conversation_id: str, steps: int, ok: bool, first_text_ms: float | None = None
    ) -> None:
        """A conversation turn finished (answered, or failed after its retries). `first_text_ms`:
        from the turn's start until the user first saw text of the answer (a preview, or the answer)."""
        if not self.enabled:
            return
        metrics: dict[str, tuple[MetricValue, str]] = {
            "TurnLatency": (float(latency_ms), "Milliseconds"),
            "TurnSteps": (steps, "Count"),
            "TurnErrors": (0 if ok else 1, "Count"),
        }
        if first_text_ms is not None:
            metrics["TimeToFirstText"] = (float(first_text_ms), "Milliseconds")
        self.emit(metrics, conversation_id=str(conversation_id), ok=ok)

    def turn_usage(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        cost_usd: float,
        model: str,
        conversation_id: str,
    ) -> None:
        """What a turn's model calls cost: tokens (input includes the cached ones) and US dollars (0
        where the model has no price). Model is a dimension: `LLM_MODELS` keeps it to a few values."""
        if not self.enabled:
            return
        self.emit(
            {
                "TurnInputTokens": (input_tokens, "Count"),
                "TurnOutputTokens": (output_tokens, "Count"),
                "TurnCacheReadTokens": (cache_read_tokens, "Count"),
                "TurnCacheWriteTokens": (cache_write_tokens, "Count"),
                "TurnCost": (float(cost_usd), "None"),
            },
            {"Model": dimension_value(model)},
            conversation_id=str(conversation_id),
        )

    def model_call(self, latency_ms: float, *, ok: bool, provider: str) -> None:
        """One request to the chat model (a step of a turn)."""
        if not self.enabled:
            return
        self.emit(
            {"ModelLatency": (float(latency_ms), "Milliseconds"), "ModelErrors": (0 if ok else 1, "Count")},
            {"Provider": dimension_value(provider)},
            ok=ok,
        )

    def tool_call(self, latency_ms: float, *, ok: bool, server: str, tool: str) -> None:
        """One MCP tool call. The tool is a property: per-tool dimensions would multiply the bill."""
        if not self.enabled:
            return
        self.emit(
            {"ToolLatency": (float(latency_ms), "Milliseconds"), "ToolErrors": (0 if ok else 1, "Count")},
            {"Server": dimension_value(server)},
            tool=tool,
            ok=ok,
        )

    def telegram_retry(self, wait_s: float, *, method: str, reason: str) -> None:
        """A Telegram call is retried after `wait_s` (flood control's retry_after, or backoff)."""
        if not self.enabled:
            return
        self.emit(
            {"TelegramRetries": (1, "Count"), "TelegramRetryWait": (float(wait_s), "Seconds")},
            {"Method": dimension_value(method)},
            reason=reason,
        )

    def actors_alive(self, n: int) -> None:
        """How many conversation actors are active now."""
        if not self.enabled:
            return
        self.emit({"ActorsAlive": (n, "Count")})

    def mailbox_depth(self, n: int, *, actor_kind: str) -> None:
        """Messages waiting in a mailbox (sampled, e.g. the deepest of a kind)."""
        if not self.enabled:
            return
        self.emit({"MailboxDepth": (n, "Count")}, {"ActorKind": dimension_value(actor_kind)})
