"""The fake Bot API and fake model server, each in a process of its own, driven from the benchmark.

In the benchmark's own process the fakes would share its GIL with the harness and be counted in
none of the figures; as separate processes they cost the bot what Telegram and a model cost it (a
socket away), and the harness reads them through a `multiprocessing` manager (a pipe per call, so
the calls that matter take lists: `add_text_messages`, `sent_since`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from multiprocessing.managers import BaseManager
from types import TracebackType
from typing import Any

__all__ = ["Fakes", "Reply"]

Reply = tuple[int, str, float]
"""A message the bot sent: (chat id, visible text, `time.monotonic()` when the fake took it)."""


class _TelegramControl:
    """Runs in the fake's process: a FakeTelegramServer and the calls the benchmark makes."""

    def __init__(self, token: str) -> None:
        from tests.fakes.telegram_server import FakeTelegramServer

        self._server = FakeTelegramServer(token)
        self._server.start()

    def base_url(self) -> str:
        return self._server.base_url

    def add_text_messages(self, messages: Sequence[tuple[int, str]]) -> None:
        for chat_id, text in messages:
            self._server.add_text_message(chat_id, text)

    def wait_for_call(self, method: str, timeout: float) -> None:
        self._server.wait_for_call(method, timeout=timeout)

    def first_call_time(self, method: str) -> float | None:
        return self._server.first_call_time(method)

    def sent_count(self) -> int:
        return len(self._server.sent)

    def call_counts(self) -> dict[str, int]:
        """How many requests of each Bot API method the fake has answered."""
        counts: dict[str, int] = {}
        for method in self._server.calls:
            counts[method] = counts.get(method, 0) + 1
        return counts

    def wait_for_sent(self, count: int, timeout: float, chat_id: int | None = None) -> list[Reply]:
        """Wait until `count` messages were sent (to `chat_id`); TimeoutError if they were not."""
        sent = self._server.wait_for_sent(chat_id=chat_id, count=count, timeout=timeout)
        return [(int(m.chat_id), m.visible_text, m.time) for m in sent[count - 1 : count]]

    def sent_since(self, base: int, limit: int) -> list[Reply]:
        return [(int(m.chat_id), m.visible_text, m.time) for m in self._server.sent[base : base + limit]]

    def stop(self) -> None:
        self._server.stop()


class _LLMControl:
    """Runs in the fake's process: a FakeLLMServer answering after `latency` seconds."""

    def __init__(self, latency: float) -> None:
        from tests.fakes.llm_server import FakeLLMServer

        self._server = FakeLLMServer()
        self._server.latency = latency
        self._server.start()

    def openai_base_url(self) -> str:
        return self._server.openai_base_url

    def stop(self) -> None:
        self._server.close()


class _TelegramManager(BaseManager):
    pass


class _LLMManager(BaseManager):
    pass


_TelegramManager.register("telegram", _TelegramControl)
_LLMManager.register("llm", _LLMControl)


class Fakes:
    """Both fakes, started in two processes for one scenario; `tg` and `llm` are their proxies."""

    def __init__(self, token: str, llm_latency: float) -> None:
        self._token = token
        self._latency = llm_latency
        self._managers: list[BaseManager] = []
        self.tg: Any = None
        self.llm: Any = None

    def __enter__(self) -> Fakes:
        tg_manager, llm_manager = _TelegramManager(), _LLMManager()
        for manager in (tg_manager, llm_manager):
            manager.start()
            self._managers.append(manager)
        self.tg = tg_manager.telegram(self._token)  # type: ignore[attr-defined]
        self.llm = llm_manager.llm(self._latency)  # type: ignore[attr-defined]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proxy in (self.tg, self.llm):
            if proxy is not None:
                proxy.stop()
        for manager in self._managers:
            manager.shutdown()

    def wait_for_first_poll(self, check_alive: Any, timeout: float = 60.0) -> float:
        """Wait for the bot's first getUpdates; return when it came (`time.monotonic()`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tg.wait_for_call("getUpdates", 0.2)
                break
            except TimeoutError:
                check_alive()
                if time.monotonic() > deadline:
                    raise
        first = self.tg.first_call_time("getUpdates")
        assert first is not None
        return float(first)
