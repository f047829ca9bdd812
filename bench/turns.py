"""Turns per second through registry → conversation actor → model (fake, zero latency) → file store.

No gateway: messages go straight to the registry and replies to a channel that drops them. The
fake OpenAI-compatible server runs in a subprocess (so it does not share this process's GIL) and
the real `openai` SDK talks to it over HTTP, without streaming (bench/streaming.py measures that).

    .venv/bin/python bench/turns.py [--quick]

Prints turns/s for 1 and 200 conversations and the framework's own time per turn: the time a
turn takes minus the time spent in model calls (store appends with fsync, actor, turn loop).
Targets: >= 500 turns/s with 200 conversations; median framework time < 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.conversation import ConversationActor, TurnSettings
from actors.protocol import Reply, ReplyTarget, UserMessage
from actors.registry import ConversationRegistry
from actors.supervisor import Supervisor
from bench._harness import format_table, median, percentile
from conf import BackoffSettings, LLMSettings, LogSettings
from llm import EmptyToolbox, ModelReply, ModelRequest, build_chat_model
from ops.logs import configure_logging
from stores import FileConversationStore

STREAM = False  # the model's cost alone: streaming it is measured by bench/streaming.py

_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fakes.llm_server import FakeLLMServer
with FakeLLMServer() as llm:
    print(llm.openai_base_url, flush=True)
    sys.stdin.read()
"""


class NullChannel:
    """Drops replies: the benchmark measures everything up to the gateway."""

    async def deliver(self, reply: Reply) -> None:
        return None

    @asynccontextmanager
    async def typing(self, target: ReplyTarget) -> AsyncIterator[None]:
        yield

    async def done(self, update_id: int) -> None:
        return None


class TimedModel:
    """Wraps the real chat model to add up the time spent in model calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spent: dict[object, float] = {}

    async def complete(self, request: ModelRequest) -> ModelReply:
        started = time.perf_counter()
        try:
            return await self.inner.complete(request)
        finally:
            # Per task: with 200 conversations, model calls of other actors overlap this one.
            task = asyncio.current_task()
            self.spent[task] = self.spent.get(task, 0.0) + time.perf_counter() - started

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedActor(ConversationActor):
    """Records, per handled message, its duration minus the model's share."""

    framework_ms: ClassVar[list[float]] = []  # shared by every actor of the run, read once at its end

    async def handle(self, message: Any) -> Any:
        model: TimedModel = self._model  # type: ignore[assignment]
        task = asyncio.current_task()
        before_model = model.spent.get(task, 0.0)
        started = time.perf_counter()
        result = await super().handle(message)
        total = time.perf_counter() - started
        TimedActor.framework_ms.append((total - (model.spent.get(task, 0.0) - before_model)) * 1000)
        return result


async def run(base_url: str, conversations: int, turns: int, directory: Path) -> dict[str, float]:
    settings = LLMSettings(provider="openai", base_url=base_url, api_key="bench", model="fake", stream=STREAM)
    model = TimedModel(build_chat_model(settings, BackoffSettings()))
    store = FileConversationStore(directory)
    await store.open()
    channel = NullChannel()
    turn = TurnSettings("Be brief.", 8, 16000)

    def new_actor(conversation_id: str) -> ConversationActor:
        return TimedActor(
            conversation_id,
            store=store,
            model=model,
            toolbox=EmptyToolbox(),
            channel=channel,
            settings=turn,
            mailbox_size=turns,
        )

    supervisor = Supervisor("conversations", backoff=BackoffSettings(), max_restarts=5, window_seconds=60)
    registry: ConversationRegistry[ConversationActor] = ConversationRegistry(new_actor, supervisor, idle_seconds=600)
    # Warm up: one turn per conversation opens connections and files; not measured.
    await asyncio.gather(
        *(
            registry.actor_for(f"c{c}").ask_future(UserMessage(f"c{c}", "warm up", ReplyTarget(c), None))
            for c in range(conversations)
        )
    )
    TimedActor.framework_ms = []
    cpu_started, started = time.process_time(), time.perf_counter()
    futures = []
    for index in range(turns):
        conversation = f"c{index % conversations}"
        message = UserMessage(conversation, f"message {index}", ReplyTarget(index % conversations), index + 1)
        futures.append(registry.actor_for(conversation).ask_future(message))
    await asyncio.gather(*futures)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    framework = list(TimedActor.framework_ms)
    await registry.stop(10)
    await model.aclose()
    await store.close()
    return {
        "turns_per_s": turns / wall,
        "framework_median_ms": median(framework),
        "framework_p99_ms": percentile(framework, 0.99),
        "cpu_per_turn_ms": cpu / turns * 1000,
    }


def main() -> None:
    configure_logging(LogSettings(level="WARNING"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns")
    args = parser.parse_args()
    turns = {1: 200 if args.quick else 1000, 200: 1000 if args.quick else 4000}
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(root=str(Path(__file__).resolve().parent.parent))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        rows = []
        results = {}
        for conversations, count in turns.items():
            with tempfile.TemporaryDirectory() as directory:
                result = asyncio.run(run(base_url, conversations, count, Path(directory)))
            results[conversations] = result
            rows.append(
                [
                    str(conversations),
                    str(count),
                    f"{result['turns_per_s']:.0f}",
                    f"{result['framework_median_ms']:.3f}",
                    f"{result['framework_p99_ms']:.3f}",
                    f"{result['cpu_per_turn_ms']:.3f}",
                ]
            )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    print(
        format_table(
            ["conversations", "turns", "turns/s", "framework median ms", "framework p99 ms", "CPU ms/turn"], rows
        )
    )
    many = results[200]
    single = results[1]
    print()
    rate, framework = many["turns_per_s"], single["framework_median_ms"]
    print(f"target turns/s with 200 conversations >= 500: {rate:.0f} {'PASS' if rate >= 500 else 'FAIL'}")
    verdict = "PASS" if framework < 2 else "FAIL"
    print(f"target median framework time < 2 ms (1 conversation): {framework:.3f} ms {verdict}")
    print(
        "framework time = turn duration minus model-call time; with 200 conversations it includes waiting for the loop."
    )


if __name__ == "__main__":
    main()
