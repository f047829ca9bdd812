"""Logging: structlog and the standard library's logging, one redacted JSON object per line.

Every record, whether logged with `structlog.get_logger(__name__)` or by a library through the
standard library's `logging` (httpx, httpcore, botocore, mcp, telegram), goes through one handler
on the root logger whose `structlog.stdlib.ProcessorFormatter` adds the context, renders the
exception as a field, removes secrets and renders one line. One handler means one lock, so lines
from threads (botocore's) never interleave.

Shape of a line (LOG_FORMAT=json)::

    {"event": "turn_done", "conversation_id": "42", "duration_ms": 812, "logger": "actors.conversation",
     "level": "info", "timestamp": "2025-01-01T12:00:00.000000Z"}

Secrets are removed from every string of the line, nested ones and the rendered traceback
included: the values registered with `configure_logging(secrets=...)` or `add_secrets`, the AWS
credentials found in the environment, and patterns that catch secrets nobody registered (Telegram
bot tokens, `sk-` keys, bearer tokens, AWS access key ids, `Authorization`/`x-api-key` headers,
`key=`/`token=` query parameters, passwords in URLs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from conf.settings import LogSettings

__all__ = [
    "METRICS_LOGGER_NAME",
    "NOISY_LOGGERS",
    "REDACTED",
    "add_secrets",
    "configure_logging",
    "redact",
]

REDACTED = "[REDACTED]"

#: Libraries that log every request at INFO/DEBUG (repeating what our own lines say: the model SDKs'
#: httpx2 wrote a line per model request); quiet unless LOG_LEVEL=DEBUG.
NOISY_LOGGERS = (
    *("httpx", "httpcore", "botocore", "aiobotocore", "urllib3", "mcp", "telegram", "asyncio"),
    *("httpx2", "httpcore2", "aiohttp", "openai", "anthropic"),
)

#: The metrics logger always passes INFO, whatever LOG_LEVEL says (see ops/metrics.py).
METRICS_LOGGER_NAME = "assistant.metrics"

# Environment variables whose values are secrets wherever they appear.
_SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "TELEGRAM_BOT_TOKEN",
    "LLM_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
)

# A value logged under one of these keys (a headers dict, a config dump) is a credential, whatever
# it looks like. Compared lower-cased; exact names only, so "token_count" stays.
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "api_key",
        "apikey",
        "token",
        "bot_token",
        "access_token",
        "refresh_token",
        "password",
        "secret",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "aws_secret_access_key",
        "aws_session_token",
    }
)

# A registered secret shorter than this is ignored: redacting "abc" everywhere would garble every
# line while protecting nothing a real credential looks like.
_MIN_SECRET_LENGTH = 6

# No pattern below matches fewer characters, so shorter strings skip the regex entirely.
_MIN_SCANNED_LENGTH = 8

# Patterns for secrets nobody registered. Each is (prefix to keep, secret part); the prefix keeps
# the line readable ("Authorization: [REDACTED]", "?key=[REDACTED]").
_PATTERNS: tuple[tuple[str, str], ...] = (
    # Telegram bot token, bare or inside https://api.telegram.org/bot<token>/getUpdates.
    ("", r"\d{5,}:[A-Za-z0-9_-]{30,}"),
    # OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-...) style API keys.
    ("", r"\bsk-[A-Za-z0-9_-]{16,}"),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    ("", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    # Authorization / x-api-key / token headers, as "name: value", "name=value" or "'name': 'value'".
    (
        r"(?i:\b(?:authorization|proxy-authorization|x-api-key|api-key|x-amz-security-token|x-goog-api-key)"
        r"[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)",
        r"[^\s\"',;}&]+",
    ),
    # A bearer token anywhere else.
    (r"(?i:\bbearer\s+)", r"[A-Za-z0-9._~+/=-]{8,}"),
    # Credentials in a query string.
    (r"(?i:[?&](?:api[_-]?key|key|token|access[_-]?token|secret|password|sig|signature)=)", r"[^&\s\"'#]+"),
    # A password in a URL's userinfo: scheme://user:password@host.
    (r"(?://[^/\s:@]+:)", r"[^@\s/]+(?=@)"),
)


# What every pattern above needs somewhere in the text: a token's or a header's colon, a query's
# or a header's equals sign, a URL password's at sign, a key's prefix, or "bearer" (as Bearer or
# BEARER). Text without any of them (most of a log line's values) is left alone without running the
# patterns: substring tests cost ~0.5 µs for a typical value, the patterns ~3 µs.
_TRIGGERS = (":", "=", "@", "sk-", "AKIA", "ASIA", "earer", "EARER")


class _Redactor:
    """One compiled regex for all known secrets and patterns; rebuilt when a secret is added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._regex = self._compile(self._secrets)

    @staticmethod
    def _compile(secrets: frozenset[str]) -> re.Pattern[str]:
        # Longest first, so a secret that contains another is replaced whole.
        literals = [re.escape(value) for value in sorted(secrets, key=len, reverse=True)]
        branches = [f"(?:{'|'.join(literals)})"] if literals else []
        for index, (prefix, secret) in enumerate(_PATTERNS):
            branches.append(f"(?P<p{index}>{prefix}){secret}" if prefix else secret)
        return re.compile("|".join(branches))

    def add(self, values: Iterable[str]) -> None:
        fresh = {value for value in values if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH}
        with self._lock:
            if fresh <= self._secrets:
                return
            self._secrets = self._secrets | fresh
            self._regex = self._compile(self._secrets)

    def reset(self) -> None:
        with self._lock:
            self._secrets = frozenset()
            self._regex = self._compile(self._secrets)

    @staticmethod
    def _replace(match: re.Match[str]) -> str:
        # The only named groups are the kept prefixes; at most one of them took part in the match.
        for prefix in match.groupdict().values():
            if prefix is not None:
                return prefix + REDACTED
        return REDACTED

    def text(self, value: str) -> str:
        if len(value) < _MIN_SCANNED_LENGTH or not self._suspect(value):
            return value
        return self._regex.sub(self._replace, value)

    def _suspect(self, value: str) -> bool:
        """Could the value hold a secret? Every pattern needs one of `_TRIGGERS`, and registered
        secrets are found as substrings."""
        for trigger in _TRIGGERS:
            if trigger in value:
                return True
        for secret in self._secrets:  # noqa: SIM110 - a loop: any() and its generator cost ~0.5 µs a value
            if secret in value:
                return True
        return False

    def item(self, key: str, value: Any) -> Any:
        """Redact a mapping's value; under a key that names a credential, the whole value goes."""
        if key.lower() in _SECRET_KEYS and value:
            return REDACTED
        return self.value(value)

    def value(self, value: Any) -> Any:
        """Redact a JSON-like value; anything that is not JSON is turned into its redacted str()."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {str(key): self.item(str(key), item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        # Objects (httpx.URL, exceptions, paths) would be str()-ed by the renderer after this step;
        # doing it here means their text is redacted too.
        return self.text(str(value))


_redactor = _Redactor()


def add_secrets(*values: str) -> None:
    """Register secret values (tokens, keys) that must never appear in a log line.

    Values shorter than 6 characters are ignored. Safe to call at any time, from any thread.
    """
    _redactor.add(values)


def redact(value: Any) -> Any:
    """Return `value` with every registered secret and secret-looking pattern replaced by [REDACTED]."""
    return _redactor.value(value)


def _redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The redaction processor: runs last before rendering, over every value of the line (but the
    ones the pipeline itself wrote: the time, the level and the logger's name).

    It also puts timestamp, level and event first, so a line reads the same way every time.
    """
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    if "event" in ordered:
        ordered["event"] = _redactor.item("event", ordered["event"])
    for key, value in event_dict.items():
        if key not in ordered:
            ordered[key] = value if key == "logger" else _redactor.item(key, value)
    return ordered


_LEADING_KEYS = ("timestamp", "level", "event")


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to the given stream, or to `sys.stdout` as it is at each line.

    Looking `sys.stdout` up per line (not once at start) keeps output going where the process's
    stdout is now, e.g. pytest's capture, instead of a stream that was replaced.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._fixed = stream
        super().__init__(stream if stream is not None else sys.stdout)

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        # StreamHandler.__init__ and setStream assign here: a given stream may be replaced, but
        # without one the handler keeps following sys.stdout.
        if self._fixed is not None:
            self._fixed = value

    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints a traceback with the record's raw arguments to stderr, unredacted and
        # over many lines; one JSON line naming the logger says enough.
        try:
            line = {"event": "log_record_unformattable", "level": "error", "logger": record.name}
            self.stream.write(json.dumps(line) + "\n")
        except (OSError, ValueError):
            # stdout is gone (closed pipe): there is nowhere left to report to.
            return


# The structlog side: cheap steps done at the call site, then handed to the stdlib handler.
# Everything that depends on the format lives in the formatter, so loggers that cached this chain
# stay correct when configure_logging is called again.
def _structlog_processors() -> list[Processor]:
    return [
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        _TIMESTAMPER,
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


_TIMESTAMPER = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")

# Records from other libraries get the same context, level, name and time.
_FOREIGN_PRE_CHAIN: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    _TIMESTAMPER,
    structlog.stdlib.ExtraAdder(),
]

# A traceback becomes a list of dicts (type, value, frames), part of the one JSON line; locals are
# off because they are large and could hold anything.
_DICT_TRACEBACKS = ExceptionRenderer(ExceptionDictTransformer(show_locals=False, max_frames=20))


def _formatter(settings: LogSettings, stream: TextIO | None) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor
    if settings.format == "console":
        target = stream if stream is not None else sys.stdout
        colors = bool(getattr(target, "isatty", lambda: False)())
        # The traceback is rendered to text first so the redactor sees it; ConsoleRenderer then
        # prints that text (its own pretty traceback would bypass redaction).
        exceptions: Processor = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    else:
        exceptions = _DICT_TRACEBACKS
        renderer = structlog.processors.JSONRenderer()
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_FOREIGN_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            _redact_event,
            renderer,
        ],
    )


def _environment_secrets() -> list[str]:
    return [value for name in _SECRET_ENV_VARS if (value := os.environ.get(name, ""))]


def configure_logging(
    settings: LogSettings,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    cache_loggers: bool = False,
) -> None:
    """Route structlog and the standard library's logging to one redacted line per record.

    `secrets` (e.g. `Settings.secrets()`) and the AWS/LLM/Telegram credentials in the environment
    are added to the redactor. `stream` defaults to `sys.stdout`, looked up at each line.

    Idempotent: calling it again replaces the previous configuration (tests reconfigure freely).
    `cache_loggers=True` makes each module's logger build its processor chain once (main.py passes
    it); it is off by default because cached loggers ignore `structlog.testing.capture_logs`.
    """
    add_secrets(*secrets, *_environment_secrets())
    level = logging.getLevelNamesMapping()[settings.level]

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdoutHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _StdoutHandler(stream)
    handler.setFormatter(_formatter(settings, stream))
    root.addHandler(handler)
    root.setLevel(level)
    # A line names its logger, not its source line, thread or process: the standard library need not
    # walk the stack for the caller or look those up for every record (~10 % of a line's cost).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # documented in logging/__init__.py: no caller lookup

    # Libraries log each HTTP request at INFO; their lines are only worth the noise when debugging.
    noisy_level = logging.NOTSET if settings.level == "DEBUG" else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(noisy_level)
    # Metrics are data, not chatter: LOG_LEVEL=WARNING must not switch CloudWatch's graphs off.
    logging.getLogger(METRICS_LOGGER_NAME).setLevel(logging.INFO)

    structlog.reset_defaults()
    structlog.configure(
        processors=_structlog_processors(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=cache_loggers,
    )


def _reset_for_tests() -> None:
    """Forget registered secrets and remove our handler (tests only)."""
    _redactor.reset()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdoutHandler):
            root.removeHandler(handler)
            handler.close()
    structlog.reset_defaults()
