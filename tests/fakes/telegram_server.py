"""A fake Telegram Bot API server: real HTTP on 127.0.0.1, answering like api.telegram.org.

It runs aiohttp on its own event loop in a background thread, so it serves python-telegram-bot
in the same process (sync or async tests), a `python main.py` subprocess, or a benchmark,
without ever blocking the caller's loop. Everything public is thread-safe.

    with FakeTelegramServer() as tg:
        bot = telegram.Bot(tg.token, base_url=tg.base_url)
        update_id = tg.add_text_message(chat_id=42, text="hi")
        ...
        [reply] = tg.wait_for_sent(chat_id=42)          # or: await tg.await_sent(chat_id=42)

It rejects what Telegram rejects (HTML that Telegram's parser refuses, texts over 4096
characters, empty texts, unknown tokens and methods), and injects faults on demand
(`fail_next`, `getupdates_outage`, `getupdates_trickle`, `conflict`, `send_latency`,
`chat_action_latency`, `block_chat`, `refuse_drafts`, `edit_flood_interval`).

More in the mixin modules: files and downloads (_telegram_files.py: `add_file`, getFile, the
`/file/bot<token>/...` route), drafts and sent files (_telegram_outbound.py: sendMessageDraft,
sendVoice, sendAudio, sendPhoto, sendDocument), webhooks (_telegram_webhook.py), and updates
with media (_telegram_media_updates.py: `add_voice`, `add_photo`, `add_album`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._telegram_common import (
    MAX_TEXT,
    ApiError,
    Described,
    chat_id_of,
    content_signature,
    error_response,
    int_or_zero,
    int_param,
    json_list,
    json_param,
    markup_key,
    optional_int,
    read_params,
    reply_to,
    text_of,
)
from tests.fakes._telegram_files import Download, FileRef, FilesMixin
from tests.fakes._telegram_media_updates import MediaUpdateBuilder
from tests.fakes._telegram_outbound import Draft, OutboundMixin, SentFile
from tests.fakes._telegram_webhook import WEBHOOK_CONFLICT, WebhookAttempt, WebhookMixin

__all__ = [
    "MAX_TEXT",
    "ChatAction",
    "Download",
    "Draft",
    "FakeTelegramServer",
    "FileRef",
    "SentFile",
    "SentMessage",
    "WebhookAttempt",
]

DEFAULT_TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "my_chat_member",
    "chat_member",
    "inline_query",
    "message_reaction",
    "message_reaction_count",
    "shipping_query",
    "pre_checkout_query",
    "poll",
    "poll_answer",
    "chosen_inline_result",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "purchased_paid_media",
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_BAD_GATEWAY_PAGE = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"  # noqa: E501
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    500: "Internal Server Error",
}


@dataclass(frozen=True)
class SentMessage:
    """A message the bot sent (sendMessage). `text` is as sent; `visible_text` after HTML parsing."""

    chat_id: int | str
    message_id: int
    text: str
    parse_mode: str | None
    message_thread_id: int | None
    reply_to: int | None
    time: float
    visible_text: str


@dataclass(frozen=True)
class ChatAction:
    """A sendChatAction call."""

    chat_id: int | str
    action: str
    message_thread_id: int | None
    time: float


@dataclass
class _Fault:
    method: str
    status: int
    description: str | None
    retry_after: int | None
    chat_id: int | None
    count: int


@dataclass
class _Waiter:
    predicate: Callable[[], bool]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


_ApiError = ApiError


@dataclass
class _State:
    updates: list[dict[str, Any]] = field(default_factory=list)
    allowed_updates: list[str] = field(default_factory=list)
    confirmed_offset: int = 0
    sent: list[SentMessage] = field(default_factory=list)
    edits: list[SentMessage] = field(default_factory=list)
    current_text: dict[tuple[int | str, int], tuple[str, str | None, str]] = field(default_factory=dict)
    user_messages: set[tuple[int, int]] = field(default_factory=set)
    chat_actions: list[ChatAction] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    commands: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    blocked: set[int | str] = field(default_factory=set)
    chat_types: dict[int, str] = field(default_factory=dict)
    outage: bool = False
    conflict: bool = False
    poll_generation: int = 0
    poll_abort: str | None = None
    client_ports: set[int] = field(default_factory=set)


_CALL_LATENCY: contextvars.ContextVar[float | None] = contextvars.ContextVar("fake_telegram_call_latency", default=None)
"""The `send_latency` of the call being answered, read when the call was recorded."""


class FakeTelegramServer(FilesMixin, OutboundMixin, WebhookMixin, MediaUpdateBuilder):
    """The fake Bot API. Use as a context manager (or `start()` / `stop()`)."""

    def __init__(self, token: str = DEFAULT_TOKEN, bot_username: str = "test_assistant_bot") -> None:
        head = token.split(":", 1)[0]
        super().__init__(bot_id=int(head) if head.isdigit() else 7_000_001, bot_username=bot_username)
        self.token = token
        self.send_latency = 0.0
        """Seconds every sendMessage / editMessageText waits before it is handled."""
        self.chat_action_latency = 0.0
        """Seconds every sendChatAction waits before it is handled."""
        self.getupdates_trickle = 0.0
        """If > 0, getUpdates answers its headers at once, then one space every this many seconds (as a
        proxy that keeps the connection alive), and its body only once this is set back to 0."""
        self.reject_unknown_chats = False
        """If True, sending to a chat no update came from answers 400 "chat not found"."""
        self.bad_gateway_html = True
        """502 answers are nginx's HTML page, as Telegram's are; False answers Bot API JSON instead."""
        self.edit_flood_interval = 0.0
        """If > 0, an editMessageText in a chat sooner than this many seconds after the previous edit there
        answers 429 with retry_after (Telegram's flood control; groups allow about 20 messages a minute)."""
        self._lock = threading.RLock()
        self._state = _State()
        self._message_ids = itertools.count(1)
        self._update_ids = itertools.count(100_001)
        self._sent_cond = threading.Condition(self._lock)
        self._waiters: list[_Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_update: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self.port = 0
        self._init_files()
        self._init_outbound()
        self._init_webhook()

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeTelegramServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving; returns once the port is bound."""
        self._thread = threading.Thread(target=self._serve, name="fake-telegram", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise RuntimeError("fake Telegram server failed to start") from self._startup_error

    def stop(self) -> None:
        """Stop serving; pending long polls end at once."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    @property
    def base_url(self) -> str:
        """Bot API base URL in python-telegram-bot's form: the SDK appends the token and method."""
        return f"http://127.0.0.1:{self.port}/bot"

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._new_update = asyncio.Event()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        webhook = asyncio.get_running_loop().create_task(self._webhook_loop(), name="fake-telegram-webhook")
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            webhook.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await webhook
            self._new_update.set()
            await runner.cleanup()

    def _loop_call(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the server's loop (from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    # -- fault injection ---------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        chat_id: int | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next `count` calls of `method` (to `chat_id`, if given) with an error instead.

        429 answers carry `parameters.retry_after`; 502 answers are nginx's HTML page, as Telegram's.
        """
        with self._lock:
            self._state.faults.append(_Fault(method.lower(), status, description, retry_after, chat_id, count))

    def getupdates_outage(self, on: bool) -> None:
        """While on, getUpdates answers 502 Bad Gateway."""
        with self._lock:
            self._state.outage = on

    def conflict(self, on: bool) -> None:
        """While on, getUpdates answers 409 Conflict (another instance is polling)."""
        with self._lock:
            self._state.conflict = on

    def block_chat(self, chat_id: int, blocked: bool = True) -> None:
        """Sending to this chat answers 403 "Forbidden: bot was blocked by the user"."""
        with self._lock:
            (self._state.blocked.add if blocked else self._state.blocked.discard)(chat_id)

    # -- driving -----------------------------------------------------------------------------------

    def add_update(self, raw: dict[str, Any]) -> int:
        """Queue an update as given (its `update_id` is assigned if missing); return its id."""
        with self._lock:
            update = dict(raw)
            if "update_id" not in update:
                update["update_id"] = next(self._update_ids)
            self._state.updates.append(update)
            for key in ("message", "edited_message", "channel_post"):
                message = update.get(key)
                chat = message.get("chat") if isinstance(message, dict) else None
                if chat:
                    self._state.chat_types[chat["id"]] = chat.get("type", "private")
                    if isinstance(message.get("message_id"), int):
                        self._state.user_messages.add((chat["id"], message["message_id"]))
        if self._new_update is not None:
            self._loop_call(self._new_update.set)
        self._wake_webhook()
        return int(update["update_id"])

    def _next_message_id(self) -> int:
        return next(self._message_ids)

    def _last_bot_message(self, chat_id: int) -> SentMessage | None:
        with self._lock:
            return next((m for m in reversed(self._state.sent) if m.chat_id == chat_id), None)

    # -- inspecting --------------------------------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        """Messages sent, in the order the server accepted them."""
        with self._lock:
            return list(self._state.sent)

    def sent_to(self, chat_id: int) -> list[SentMessage]:
        """Messages sent to one chat, in order."""
        with self._lock:
            return [m for m in self._state.sent if m.chat_id == chat_id]

    @property
    def edits(self) -> list[SentMessage]:
        """Successful editMessageText calls, as the new message content (`time` is when it was accepted)."""
        with self._lock:
            return list(self._state.edits)

    def edits_to(self, chat_id: int) -> list[SentMessage]:
        """Successful edits in one chat, in order."""
        with self._lock:
            return [m for m in self._state.edits if m.chat_id == chat_id]

    def edit_intervals(self, chat_id: int) -> list[float]:
        """Seconds between consecutive accepted edits in one chat (for checking a per-chat edit rate)."""
        times = [m.time for m in self.edits_to(chat_id)]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def message_text(self, chat_id: int, message_id: int) -> str | None:
        """The current text of a bot message (after its edits), as sent; None if there is no such message."""
        with self._lock:
            current = self._state.current_text.get((chat_id, message_id))
            return current[0] if current else None

    async def await_edits(self, chat_id: int | None = None, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Await until `count` edits were accepted (in `chat_id`, if given); return them."""

        def enough() -> bool:
            return sum(1 for m in self._state.edits if chat_id is None or m.chat_id == chat_id) >= count

        await self._await(enough, timeout, f"{count} edit(s) in {chat_id}")
        with self._lock:
            return [m for m in self._state.edits if chat_id is None or m.chat_id == chat_id]

    @property
    def chat_actions(self) -> list[ChatAction]:
        """sendChatAction calls, in order."""
        with self._lock:
            return list(self._state.chat_actions)

    @property
    def calls(self) -> list[str]:
        """Every Bot API method called (canonical names, faults included), in order."""
        with self._lock:
            return list(self._state.calls)

    @property
    def connections_seen(self) -> int:
        """How many client connections (distinct client ports) made Bot API calls so far."""
        with self._lock:
            return len(self._state.client_ports)

    def first_call_time(self, method: str) -> float | None:
        """`time.monotonic()` when `method` was first called, or None."""
        with self._lock:
            for name, at in zip(self._state.calls, self._state.call_times, strict=True):
                if name == method:
                    return at
            return None

    def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> None:
        """Block until `method` was called `count` times in all; TimeoutError if it was not."""
        with self._sent_cond:
            if not self._sent_cond.wait_for(lambda: self._state.calls.count(method) >= count, timeout):
                raise TimeoutError(f"expected {count} {method} call(s); calls: {self._state.calls[-20:]!r}")

    @property
    def confirmed_offset(self) -> int:
        """The highest offset a getUpdates asked for: every update below it is confirmed."""
        with self._lock:
            return self._state.confirmed_offset

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not confirmed yet."""
        with self._lock:
            return [dict(u) for u in self._state.updates]

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, str]]:
        """The command list set for a scope (default scope if None)."""
        with self._lock:
            return list(self._state.commands.get(_scope_key(scope, language_code), []))

    def wait_for_sent(self, chat_id: int | None = None, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Block until `count` messages were sent (to `chat_id`, if given); return them all.

        Raises TimeoutError, listing what was sent, if they do not arrive within `timeout`.
        """
        with self._sent_cond:
            ok = self._sent_cond.wait_for(lambda: self._count(chat_id) >= count, timeout)
            if not ok:
                raise TimeoutError(f"expected {count} message(s) to {chat_id}; sent: {self._state.sent!r}")
            return self._matching(chat_id)

    async def await_sent(self, chat_id: int | None = None, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Like `wait_for_sent`, but awaits without blocking the caller's event loop."""
        try:
            await self._await(lambda: self._count(chat_id) >= count, timeout, "")
        except TimeoutError:
            raise TimeoutError(f"expected {count} message(s) to {chat_id}; sent: {self.sent!r}") from None
        with self._lock:
            return self._matching(chat_id)

    async def await_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> None:
        """Await until `method` was called `count` times in all (faulted calls included)."""
        await self._await(lambda: self._state.calls.count(method) >= count, timeout, f"{count} {method} call(s)")

    async def await_chat_actions(self, chat_id: int | None = None, count: int = 1, timeout: float = 5.0) -> None:
        """Await until `count` chat actions were recorded (in `chat_id`, if given)."""

        def enough() -> bool:
            return sum(1 for a in self._state.chat_actions if chat_id is None or a.chat_id == chat_id) >= count

        await self._await(enough, timeout, f"{count} chat action(s) in {chat_id}")

    async def _await(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(predicate, loop, loop.create_future())
        with self._lock:
            if predicate():
                return
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except TimeoutError:
            raise TimeoutError(f"expected {what}; calls: {self.calls!r}") from None
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _notify(self) -> None:
        """Wake the waiters whose condition now holds (call with the lock held)."""
        self._sent_cond.notify_all()
        for waiter in list(self._waiters):
            if waiter.predicate():
                self._waiters.remove(waiter)
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future)

    def _count(self, chat_id: int | None) -> int:
        # Cheap for chat_id None: benchmarks wait for thousands of messages with it.
        if chat_id is None:
            return len(self._state.sent)
        return sum(1 for m in self._state.sent if m.chat_id == chat_id)

    def _matching(self, chat_id: int | None) -> list[SentMessage]:
        return [m for m in self._state.sent if chat_id is None or m.chat_id == chat_id]

    def _record_sent(self, message: SentMessage) -> None:
        with self._sent_cond:
            self._state.sent.append(message)
            self._notify()

    # -- HTTP --------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path.startswith("file/"):
            return await self._download(path)
        prefix, _, method = path.partition("/")
        if not prefix.startswith("bot") or not method or "/" in method:
            return _error(404, "Not Found")
        if prefix[3:] != self.token:
            return _error(401, "Unauthorized")
        handler = _HANDLERS.get(method.lower())
        canonical = handler.__name__.removeprefix("_m_") if handler else method
        try:
            params = await read_params(request)
        except ValueError as exc:
            return _error(400, f"Bad Request: {exc}")
        except ConnectionResetError:  # the client went away mid-request (a killed bot): nobody to answer
            return web.Response(status=400)
        with self._lock:
            self._state.calls.append(canonical)
            self._state.call_times.append(time.monotonic())
            self._state.client_ports.add(_client_port(request))
            _CALL_LATENCY.set(self.send_latency)  # as it was when the call was seen (tests change it then)
            self._notify()
        if handler is None:
            return _error(404, "Not Found")
        if canonical == "getUpdates" and self.getupdates_trickle > 0:
            return await self._trickle(request)
        try:
            self._check_fault(canonical, params)
            result = await handler(self, params)
        except _ApiError as exc:
            if exc.status == 502 and self.bad_gateway_html:
                return web.Response(status=502, text=_BAD_GATEWAY_PAGE, content_type="text/html")
            return _error(exc.status, exc.description, exc.parameters)
        if isinstance(result, Described):
            return web.json_response({"ok": True, "result": result.result, "description": result.description})
        return web.json_response({"ok": True, "result": result})

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        """A getUpdates answer that never ends while `getupdates_trickle` is set: a space at a time."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        assert self._stopping is not None
        try:
            while self.getupdates_trickle > 0 and not self._stopping.is_set():
                await response.write(b" ")
                await asyncio.sleep(self.getupdates_trickle)
            await response.write(b'{"ok": true, "result": []}')
            await response.write_eof()
        except ConnectionResetError:  # the client gave up on it, which is the point
            pass
        return response

    async def send_delay(self) -> None:
        """Wait `send_latency` as it was when this call was seen: a test that changes it once it sees
        a call must not race the server's thread to the value the call gets."""
        latency = _CALL_LATENCY.get()
        latency = self.send_latency if latency is None else latency
        if latency:
            await asyncio.sleep(latency)

    async def _run_method(self, method: str, params: dict[str, Any]) -> None:
        """Run a method named in a webhook answer, as Telegram does (errors are not reported to anyone)."""
        handler = _HANDLERS.get(method.lower())
        name = method.lower()
        if handler is None or name.startswith("get") or name in ("setwebhook", "deletewebhook", "close", "logout"):
            return
        with self._lock:
            self._state.calls.append(handler.__name__.removeprefix("_m_"))
            self._state.call_times.append(time.monotonic())
            _CALL_LATENCY.set(self.send_latency)
            self._notify()
        with contextlib.suppress(_ApiError):
            self._check_fault(handler.__name__.removeprefix("_m_"), params)
            await handler(self, params)

    def _check_fault(self, method: str, params: dict[str, Any]) -> None:
        with self._lock:
            for fault in self._state.faults:
                if fault.method != method.lower():
                    continue
                if fault.chat_id is not None and chat_id_of(params.get("chat_id")) != fault.chat_id:
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._state.faults.remove(fault)
                break
            else:
                return
        if fault.status == 429:
            wait = fault.retry_after if fault.retry_after is not None else 1
            raise _ApiError(429, fault.description or f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        raise _ApiError(fault.status, fault.description or _DEFAULT_DESCRIPTIONS.get(fault.status, "Error"))

    # -- methods -----------------------------------------------------------------------------------

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self.bot_user(full=True)

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int_param(params.get("offset"), "offset", 0)
        limit = max(1, min(100, int_param(params.get("limit"), "limit", 100)))
        timeout = max(0, int_param(params.get("timeout"), "timeout", 0))
        allowed = json_list(params.get("allowed_updates"))
        with self._lock:
            if self._state.outage:
                raise _ApiError(502, "Bad Gateway")
            if self._state.conflict:
                raise _ApiError(409, _DEFAULT_DESCRIPTIONS[409])
            if self._webhook.url:
                raise _ApiError(409, WEBHOOK_CONFLICT)
            if allowed is not None:
                self._state.allowed_updates = allowed
            self._confirm(offset)
            # A newer getUpdates terminates an older one, as on Telegram.
            self._state.poll_generation += 1
            self._state.poll_abort = None
            generation = self._state.poll_generation
        assert self._new_update is not None
        assert self._stopping is not None
        self._new_update.set()  # wakes an older poll so it can answer 409
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if generation != self._state.poll_generation:
                    raise _ApiError(409, self._state.poll_abort or _DEFAULT_DESCRIPTIONS[409])
                ready = self._deliverable(offset)[:limit]
                self._new_update.clear()
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._stopping.is_set():
                return ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), remaining)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            keep = self._state.updates[offset:]
            self._state.updates = keep
            return
        self._state.confirmed_offset = max(self._state.confirmed_offset, offset)
        self._state.updates = [u for u in self._state.updates if u["update_id"] >= offset]

    def _deliverable(self, offset: int) -> list[dict[str, Any]]:
        # Unknown names are ignored; a list naming no known type means the default, as in tdlib.
        asked = set(self._state.allowed_updates) & set(UPDATE_TYPES)
        allowed = asked or set(UPDATE_TYPES) - {"chat_member", "message_reaction", "message_reaction_count"}
        # Updates of types not asked for are dropped by Telegram, never delivered later.
        self._state.updates = [u for u in self._state.updates if _update_type(u) in allowed]
        return [dict(u) for u in self._state.updates if u["update_id"] >= offset]

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        await self.send_delay()
        chat_id = self._check_chat(params)
        text, visible, parse_mode = text_of(params)
        thread = optional_int(params.get("message_thread_id"), "message_thread_id")
        replied = reply_to(params)
        message_id = self._next_message_id()
        with self._lock:
            self._state.current_text[(chat_id, message_id)] = (text, parse_mode, markup_key(params))
        self._record_sent(
            SentMessage(chat_id, message_id, text, parse_mode, thread, replied, time.monotonic(), visible)
        )
        return self.bot_message(chat_id, message_id, visible, self._state.chat_types.get(int_or_zero(chat_id)))

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        await self.send_delay()
        if params.get("inline_message_id"):
            raise _ApiError(400, "Bad Request: the fake server has no inline messages")
        chat_id = self._check_chat(params)
        message_id = int_param(params.get("message_id"), "message_id", -1)
        text, visible, parse_mode = text_of(params)
        markup = markup_key(params)
        with self._lock:
            current = self._state.current_text.get((chat_id, message_id))
            if current is None:
                if (chat_id, message_id) in self._state.user_messages:
                    raise _ApiError(400, "Bad Request: message can't be edited")
                raise _ApiError(400, "Bad Request: message to edit not found")
            if content_signature(*current[:2]) == content_signature(text, parse_mode) and current[2] == markup:
                raise _ApiError(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup "
                    "are exactly the same as a current content and reply markup of the message",
                )
            self._check_edit_flood(chat_id)
            self._state.current_text[(chat_id, message_id)] = (text, parse_mode, markup)
            self._state.edits.append(
                SentMessage(chat_id, message_id, text, parse_mode, None, None, time.monotonic(), visible)
            )
            self._notify()
        return self.bot_message(chat_id, message_id, visible, self._state.chat_types.get(int_or_zero(chat_id)))

    def _check_edit_flood(self, chat_id: int | str) -> None:
        if self.edit_flood_interval <= 0:
            return
        last = next((m.time for m in reversed(self._state.edits) if m.chat_id == chat_id), None)
        if last is not None:
            wait = self.edit_flood_interval - (time.monotonic() - last)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise _ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        if self.chat_action_latency:
            await asyncio.sleep(self.chat_action_latency)
        chat_id = self._check_chat(params)
        action = str(params.get("action") or "")
        if action not in CHAT_ACTIONS:
            raise _ApiError(400, "Bad Request: wrong parameter action in request")
        thread = optional_int(params.get("message_thread_id"), "message_thread_id")
        with self._lock:
            self._state.chat_actions.append(ChatAction(chat_id, action, thread, time.monotonic()))
            self._notify()
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        commands = json_param(params.get("commands"), "commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _ApiError(400, "Bad Request: commands must be a list of at most 100 commands")
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            if not (1 <= len(name) <= 32) or not all(c.islower() or c.isdigit() or c == "_" for c in name):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not (1 <= len(str(command.get("description", ""))) <= 256):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = _scope_key(json_param(params.get("scope"), "scope"), str(params.get("language_code") or ""))
        with self._lock:
            self._state.commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    async def _m_getMyCommands(self, params: dict[str, Any]) -> Any:
        key = _scope_key(json_param(params.get("scope"), "scope"), str(params.get("language_code") or ""))
        with self._lock:
            return list(self._state.commands.get(key, []))

    async def _m_deleteMyCommands(self, params: dict[str, Any]) -> Any:
        key = _scope_key(json_param(params.get("scope"), "scope"), str(params.get("language_code") or ""))
        with self._lock:
            self._state.commands.pop(key, None)
        return True

    async def _m_close(self, params: dict[str, Any]) -> Any:
        raise _ApiError(400, "Bad Request: close is not supported by the fake server")

    async def _m_logOut(self, params: dict[str, Any]) -> Any:
        raise _ApiError(400, "Bad Request: logOut is not supported by the fake server")

    def _check_chat(self, params: dict[str, Any]) -> int | str:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        chat_id = chat_id_of(raw)
        if chat_id is None:
            raise _ApiError(400, "Bad Request: chat not found")
        with self._lock:
            if chat_id in self._state.blocked:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            if self.reject_unknown_chats and chat_id not in self._state.chat_types:
                raise _ApiError(400, "Bad Request: chat not found")
        return chat_id


_HANDLERS: dict[str, Any] = {
    name.removeprefix("_m_").lower(): getattr(FakeTelegramServer, name)
    for name in dir(FakeTelegramServer)
    if name.startswith("_m_")
}


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_error = error_response


def _update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "unknown")


def _scope_key(scope: Any, language_code: str) -> str:
    kind = json.dumps(scope or {"type": "default"}, sort_keys=True)
    return f"{kind}|{language_code}"


def _client_port(request: web.Request) -> int:
    """The client's port of the connection a request came on (0 if unknown)."""
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return int(peer[1]) if peer else 0
