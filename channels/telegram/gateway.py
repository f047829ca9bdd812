"""The Telegram gateway: durable long polling, routing to conversation actors, and replies."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from telegram import Bot, BotCommand
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBUserWarning
from tenacity import RetryCallState, retry_if_exception

from actors import texts
from actors.commands import COMMANDS
from actors.protocol import Command, DeliveryFailed, Reply, UserMessage
from actors.registry import ConversationRegistry
from actors.runtime import ActorStopped, MailboxFull
from channels.telegram.albums import AlbumCollector
from channels.telegram.channel import TelegramChannel
from channels.telegram.client import TelegramClient
from channels.telegram.routing import BotIdentity, Ignore, Notify, Route, Routed, is_durable, route_update
from channels.telegram.sender import retry_after_seconds
from channels.telegram.strangers import StrangerGate
from conf import Settings
from ops.aio import run_unless_set, wait_event
from ops.backoff import Backoff
from stores import IngressLog, StoreError

__all__ = ["BOT_COMMANDS", "TelegramChannel", "TelegramGateway"]

log = structlog.get_logger(__name__)

BOT_COMMANDS = tuple(BotCommand(command.word, command.menu) for command in COMMANDS if command.menu)
ALLOWED_UPDATES = ["message"]

# We call getUpdates through do_api_request on purpose: it hands back raw JSON, which goes to the
# ingress log as is, and one update PTB cannot parse cannot then fail (and so stall) its whole batch.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning)


class TelegramGateway:
    """Polls Telegram with its own loop so an update's offset is confirmed only after the ingress
    log holds it, and routes each update to its conversation's actor (as the log's write runs).

    Sending and polling use separate connection pools (a long poll never waits behind replies).
    A poll that keeps failing backs off (capped, so polling resumes within seconds of an outage),
    and one with no success for `watchdog_seconds` rebuilds its connection. A token Telegram
    refuses, or another poller that keeps conflicting, ends `run` with the error, so the
    supervisor restarts it and, past its restart intensity, stops the process with status 1.
    Polling and start-up calls wait as `backoff` says (default: `Backoff(settings.backoff)`), and
    no poll goes out while the registry has no room. `bot` is the sending client (built, and closed,
    by whoever owns it): the gateway identifies the bot and registers its commands through it;
    `channel` delivers its own notices. Polling uses a client of its own, opened and closed here.
    """

    def __init__(
        self,
        settings: Settings,
        registry: ConversationRegistry[Any],
        ingress: IngressLog,
        *,
        bot: Bot,
        channel: TelegramChannel,
        backoff: Backoff | None = None,
        strangers: StrangerGate | None = None,
        poll_margin_seconds: float = 15.0,
    ) -> None:
        self._settings = settings.telegram
        self._backoff = backoff if backoff is not None else Backoff(settings.backoff)
        self._registry = registry
        self._ingress = ingress
        self._send_bot = bot
        self._poll_client: TelegramClient | None = None
        self._poll_bot: Bot | None = None
        self.channel = channel
        self.identity: BotIdentity | None = None
        self.last_poll_ok = time.monotonic()
        self.polls = 0
        self.polling = asyncio.Event()
        """Set at the first successful poll: the gateway serves (work that can wait starts then)."""
        self.ingress_failing = False
        """The last append to the ingress log failed: updates cannot be acknowledged (/healthz 503)."""
        self._strangers = strangers if strangers is not None else StrangerGate()
        self._poll_margin_seconds = poll_margin_seconds
        self._stop_grace_seconds = settings.actors.stop_grace_seconds
        self._stopping = asyncio.Event()
        self._poll_bound: asyncio.Timeout | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._album_parts = AlbumCollector(
            self._route,
            channel.add_album,
            lambda update_id: self._spawn(channel.done(update_id), f"ingress-done:{update_id}"),
            settings.media.album_wait_seconds,
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """The gateway's task: identify the bot, replay unanswered updates, then poll until stopped."""
        await self._renew_poll_bot()
        try:
            # Start-up retries Telegram for as long as it takes; a stop must not wait for that.
            if not await run_unless_set(self._start(), self._stopping, name="telegram-gateway-start"):
                log.info("telegram_start_abandoned")
                return
            await self._replay_pending()
            await self._poll_forever()
        finally:
            await self._shutdown_poll_bot()

    def stop(self) -> None:
        """Stop polling now (a poll under way is abandoned); queued work goes on in the actors."""
        self._stopping.set()
        if self._poll_bound is not None and not self._poll_bound.expired():
            self._poll_bound.reschedule(-1)  # due at once

    async def aclose(self) -> None:
        """Once polling has stopped: finish the notices in flight (within the stop grace period)."""
        await self._album_parts.aclose()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=min(5.0, self._stop_grace_seconds))
        for task in list(self._tasks):
            log.warning("gateway_task_abandoned", task=task.get_name())
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive while a poll succeeded within the watchdog period and the ingress log takes updates."""
        since = time.monotonic() - self.last_poll_ok
        polling = since < self._settings.watchdog_seconds
        ok = polling and not self.ingress_failing
        status = "ok" if ok else "stalled" if not polling else "ingress_failing"
        return ok, {"status": status, "actors": len(self._registry), "last_poll_s": round(since, 3)}

    async def _start(self) -> None:
        bot = self._send_bot
        # getMe and deleteWebhook at once: neither needs the other's answer, and the first poll waits
        # for both (one round trip less before it). A refusal of either cancels the other and propagates.
        try:
            async with asyncio.TaskGroup() as calls:
                calls.create_task(self._retrying("getMe", bot.initialize))  # once: an initialised Bot returns at once
                calls.create_task(self._retrying("deleteWebhook", self._delete_webhook))
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None  # InvalidToken, ...: as if the calls had been made in turn
        me = bot.bot
        self.identity = BotIdentity(me.id, me.username or "")
        log.info("telegram_bot_identified", bot_id=me.id, username=me.username)
        if not self._settings.allowed_user_ids.everyone and not self._settings.allowed_user_ids.user_ids:
            log.warning("telegram_nobody_allowed", hint="set TELEGRAM_ALLOWED_USER_IDS to serve someone")
        # The command menu is no reason to make the first poll wait (two round trips at every start).
        self._spawn(self._register_commands(), "telegram-commands")

    async def _delete_webhook(self) -> None:
        # Polling and a webhook exclude each other: a webhook left set would make getUpdates fail.
        await self._send_bot.delete_webhook(drop_pending_updates=False)

    async def _register_commands(self) -> None:
        # setMyCommands at every start draws long 429s from Telegram; only call it on a change.
        try:
            current = await self._send_bot.get_my_commands()
            wanted = [(command.command, command.description) for command in BOT_COMMANDS]
            if [(command.command, command.description) for command in current] != wanted:
                await self._send_bot.set_my_commands(list(BOT_COMMANDS))
                log.info("telegram_commands_registered", commands=[name for name, _ in wanted])
        except TelegramError as exc:
            log.warning("telegram_commands_not_registered", error=repr(exc))

    async def _retrying(self, what: str, call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Retry a start-up call through network trouble and flood control until it succeeds; refusals raise."""

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait_s = round(state.upcoming_sleep, 3)
            log.warning("telegram_start_retry", call=what, attempt=state.attempt_number, wait_s=wait_s, error=repr(exc))

        async for attempt in self._backoff.retrying(
            retry=retry_if_exception(_worth_retrying),
            before_sleep=log_retry,
            retry_after=lambda exc: retry_after_seconds(exc) if isinstance(exc, RetryAfter) else None,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _renew_poll_bot(self) -> None:
        """A fresh polling client (a connection of its own), closing the old one if any."""
        await self._shutdown_poll_bot()
        self._poll_client = TelegramClient(self._settings, pool_size=1, read_timeout=10.0)
        self._poll_bot = self._poll_client.bot

    async def _shutdown_poll_bot(self) -> None:
        client, self._poll_client, self._poll_bot = self._poll_client, None, None
        if client is not None:
            await client.aclose()

    # -- polling ----------------------------------------------------------------------------------

    async def _replay_pending(self) -> None:
        pending = await self._ingress.pending()
        if pending:
            log.info("ingress_replay", updates=len(pending), first=pending[0].get("update_id"))
        arrived = asyncio.get_running_loop().time()
        for update in pending:
            self._handle(update["update_id"], self._route_of(update), arrived, replay=True)

    async def _poll_forever(self) -> None:
        offset: int | None = None
        failures = 0
        conflict_since: float | None = None
        rebuilt_for_stall = False
        while not self._stopping.is_set():
            if time.monotonic() - self.last_poll_ok > self._settings.watchdog_seconds and not rebuilt_for_stall:
                log.error("telegram_poll_stalled", since_s=round(time.monotonic() - self.last_poll_ok, 1))
                await self._renew_poll_bot()
                rebuilt_for_stall = True
            # Short after a failure and at start: the answer shows at once that Telegram is back (/healthz).
            timeout = self._settings.poll_timeout_seconds if failures == 0 and self.polls else 0
            await self._registry.wait_for_room(self._stopping, self._held)
            try:
                updates = await self._get_updates(offset, timeout)
            except InvalidToken:
                log.critical("telegram_token_rejected")
                raise
            except Conflict as exc:
                now = time.monotonic()
                conflict_since = conflict_since or now
                # Another poller for this long (a second deployment?): stop, so the supervisor
                # restarts us and, if it persists, the process exits 1 for the operator to see.
                if now - conflict_since > self._settings.watchdog_seconds:
                    log.critical("telegram_conflict_persists", since_s=round(now - conflict_since, 1))
                    raise
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("telegram_poll_conflict", wait_s=round(delay, 3), error=str(exc))
                await self._pause(delay)
                continue
            except RetryAfter as exc:
                delay = self._backoff.delay(failures, retry_after=retry_after_seconds(exc))
                log.warning("telegram_poll_retry_after", wait_s=delay)
                await self._pause(delay)
                continue
            except (NetworkError, TimeoutError) as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("telegram_poll_failed", attempt=failures, wait_s=round(delay, 3), error=repr(exc))
                if isinstance(exc, TimeoutError):
                    # We cut off a poll that hung; its connection may be lost to the pool with it.
                    await self._renew_poll_bot()
                await self._pause(delay)
                continue
            failures, conflict_since, rebuilt_for_stall = 0, None, False
            self.last_poll_ok, self.polls = time.monotonic(), self.polls + 1
            self.polling.set()
            if updates and await self._take(updates):
                offset = max(update["update_id"] for update in updates) + 1
                await asyncio.sleep(0)  # the turns just started go first (to their model): a poll only waits
            del updates  # not held through the next long poll (a burst's last batch would outlive it)

    async def _take(self, updates: list[dict[str, Any]]) -> bool:
        """Make the updates that need it durable and act on all of them: as the write runs while the log
        is healthy (a turn's first write goes to disk alongside; should this one fail, the chat's records
        answer the next poll's copy), after it otherwise. False if the ingress log failed: nothing is
        acknowledged then, and the next poll asks for the same updates again."""
        arrived = asyncio.get_running_loop().time()
        routes = [(update["update_id"], self._route_of(update)) for update in updates]
        durable = [update for update, (_, route) in zip(updates, routes, strict=True) if is_durable(route)]
        handled = not self.ingress_failing and self._handle_all(routes, arrived)
        if durable:
            try:
                await self._ingress.append(durable)
            except StoreError as exc:
                self.ingress_failing = True
                log.error("ingress_append_failed", updates=len(durable), error=repr(exc))
                await self._pause(self._backoff.delay(1))
                return False
            if self.ingress_failing:
                log.info("ingress_append_recovered")
            self.ingress_failing = False
        return handled or self._handle_all(routes, arrived)

    def _handle_all(self, routes: list[tuple[int, Route]], arrived: float) -> bool:
        for update_id, route in routes:
            self._handle(update_id, route, arrived)
        return True

    async def _get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        bot = self._poll_bot
        assert bot is not None
        kwargs: dict[str, Any] = {"timeout": timeout, "allowed_updates": ALLOWED_UPDATES}
        if offset is not None:
            kwargs["offset"] = offset
        if self._stopping.is_set():
            return []
        try:
            # A poll whose connection silently died, or that a proxy keeps alive with a byte now and then,
            # would hang: bound beyond the poll timeout. `stop` ends the bound at once (no task needed).
            async with asyncio.timeout(timeout + self._poll_margin_seconds) as self._poll_bound:
                result = await bot.do_api_request("getUpdates", api_kwargs=kwargs, read_timeout=timeout + 10)
        except TimeoutError:
            if self._stopping.is_set():
                # Stopping: the poll was abandoned. Its updates, if any, are not acknowledged, so
                # Telegram hands them over again at the next start.
                return []
            raise
        finally:
            self._poll_bound = None
        return [update for update in result if isinstance(update, dict) and isinstance(update.get("update_id"), int)]

    def _held(self) -> None:
        self.last_poll_ok = time.monotonic()  # held on purpose (wait_for_room), not stalled: no watchdog

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if the gateway is asked to stop meanwhile."""
        await wait_event(self._stopping, seconds)

    # -- routing ----------------------------------------------------------------------------------

    def _route_of(self, update: dict[str, Any]) -> Route:
        identity = self.identity
        assert identity is not None
        try:
            return route_update(update, identity, self._settings.allowed_user_ids)
        except Exception as exc:  # a malformed update must never stop polling
            log.error("update_unroutable", update_id=update.get("update_id"), error=repr(exc))
            return Ignore("unroutable")

    def _handle(self, update_id: int, route: Route, arrived: float, *, replay: bool = False) -> None:
        """Act on a routed update. `arrived` is when it was received (the loop's clock): the turn's
        deadline counts from it. Replayed updates are those the ingress log held at start."""
        if isinstance(route, Routed):
            if not self._album_parts.take(route, update_id, arrived, replay):
                self._route(route, update_id, arrived, replay)
        elif isinstance(route, Notify) and is_durable(route):
            log.info("update_notice", update_id=update_id, reason=route.reason, conversation_id=route.conversation_id)
            reply = Reply(route.conversation_id, route.text, route.target, update_id, kind="notice")
            self._spawn(self._notify(reply), f"notice:{update_id}")
        elif replay:  # logged by an older version, which kept every update: clear it
            self._spawn(self.channel.done(update_id), f"ingress-done:{update_id}")
        elif isinstance(route, Notify) and self._strangers.admit(route.user_id):
            log.info("update_refused", update_id=update_id, user_id=route.user_id)
            reply = Reply(route.conversation_id, route.text, route.target, None, kind="notice")
            self._spawn(self._notify(reply), f"refusal:{update_id}")
        else:
            log.debug("update_ignored", update_id=update_id, reason=route.reason)

    def _route(self, route: Routed, update_id: int, arrived: float, replay: bool) -> None:
        message = route.message
        if isinstance(message, Command) and message.name == "stop":
            # Out of band: a /stop must not wait behind the turn it stops.
            if not self._registry.interrupt(route.conversation_id, message):
                reply = Reply(route.conversation_id, texts.NOTHING_TO_STOP, message.target, update_id, kind="notice")
                self._spawn(self._notify(reply), f"stop:{update_id}")
            return
        if isinstance(message, UserMessage):
            message = dataclasses.replace(message, received_at=arrived)
        try:
            self._registry.tell(route.conversation_id, message)
        except MailboxFull:
            log.warning("message_refused", update_id=update_id, conversation_id=route.conversation_id, reason="busy")
            reply = Reply(route.conversation_id, texts.BUSY, message.target, update_id, kind="notice")
            # Done before the notice is sent: a restart never sends it again (at most once).
            self._spawn(self._done_then_notify(reply, update_id), f"busy:{update_id}")
        except ActorStopped:
            # Stopping: the update stays in the ingress log and is replayed at the next start.
            log.info("update_deferred", update_id=update_id, conversation_id=route.conversation_id)
        else:
            log.debug("update_routed", update_id=update_id, conversation_id=route.conversation_id, replay=replay)

    async def _notify(self, reply: Reply) -> None:
        try:
            await self.channel.deliver(reply)
        except DeliveryFailed as exc:
            log.warning("notice_undeliverable", update_id=reply.update_id, reason=exc.reason)
        if reply.update_id is not None:
            await self.channel.done(reply.update_id)

    async def _done_then_notify(self, reply: Reply, update_id: int) -> None:
        await self.channel.done(update_id)
        await self._notify(dataclasses.replace(reply, update_id=None))

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway_task_failed", task=task.get_name(), error=repr(task.exception()))


def _worth_retrying(exc: BaseException) -> bool:
    """Flood control and network trouble are; a refusal is not (PTB's BadRequest is a NetworkError)."""
    return isinstance(exc, RetryAfter) or (isinstance(exc, NetworkError) and not isinstance(exc, BadRequest))
