"""The console gateway: the same actors, store and tools, talking over stdin/stdout."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TextIO

import structlog

from actors.commands import command_args, command_named
from actors.protocol import Command, ConversationMessage, Reply, ReplyTarget, UserMessage
from actors.runtime import ActorStopped, PoisonMessage

__all__ = ["CONSOLE_CONVERSATION_ID", "ConsoleChannel", "ConsoleGateway", "parse_console_line"]

log = structlog.get_logger(__name__)

CONSOLE_CONVERSATION_ID = "console"
_TARGET = ReplyTarget(chat_id=0)


def parse_console_line(line: str) -> ConversationMessage | None:
    """A typed line as a protocol message (None for a blank line)."""
    text = line.strip()
    if not text:
        return None
    first = text.split()[0]
    command = command_named(first[1:]) if first.startswith("/") else None
    if command is not None:
        return Command(CONSOLE_CONVERSATION_ID, command, _TARGET, args=command_args(text))
    return UserMessage(CONSOLE_CONVERSATION_ID, text, _TARGET)


class ConsoleChannel:
    """Prints replies to the terminal; nothing to acknowledge."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    async def deliver(self, reply: Reply) -> None:
        """Print the reply."""
        out = self._out or sys.stdout
        out.write(f"{reply.text}\n\n")
        out.flush()

    @asynccontextmanager
    async def typing(self, target: ReplyTarget) -> AsyncIterator[None]:
        """Nothing to show: the terminal waits visibly."""
        yield

    async def done(self, update_id: int) -> None:
        """Console messages have no update to acknowledge."""


async def _read_line(stdin: TextIO) -> str:
    """One line from stdin ("" at its end). Reading a terminal blocks, so it happens in a daemon
    thread: Ctrl-C then stops the assistant at once, where a pool thread would hold the exit
    until the next Enter."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        try:
            line = stdin.readline()
        except (OSError, ValueError) as exc:  # a closed or broken stdin ends the input
            log.info("console_input_failed", error=repr(exc))
            line = ""
        if not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, future, line)

    threading.Thread(target=read, name="console-stdin", daemon=True).start()
    return await future


def _resolve(future: asyncio.Future[str], line: str) -> None:
    if not future.done():
        future.set_result(line)


class ConsoleGateway:
    """Reads lines from stdin, asks the console conversation's actor, and stops at end of input."""

    def __init__(
        self,
        ask: Callable[[str, ConversationMessage], asyncio.Future[object]],
        on_end_of_input: Callable[[], None],
        stdin: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self._ask = ask
        self._on_end = on_end_of_input
        self._stdin = stdin
        self._out = out

    async def run(self) -> None:
        """The gateway's task: one line, one turn, until end of input."""
        stdin = self._stdin or sys.stdin
        out = self._out or sys.stdout
        interactive = stdin.isatty()
        try:
            while True:
                if interactive:
                    out.write("you> ")
                    out.flush()
                line = await _read_line(stdin)
                if not line:
                    break
                message = parse_console_line(line)
                if message is None:
                    continue
                try:
                    await self._ask(CONSOLE_CONVERSATION_ID, message)
                except PoisonMessage:
                    pass  # the actor already told the user
                except ActorStopped:
                    break
        finally:
            log.info("console_end_of_input")
            self._on_end()
