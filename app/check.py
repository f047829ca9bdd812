"""`python main.py --check`: reach every dependency once and say, one line each, what answered."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TextIO

from conf import Settings

__all__ = ["run_checks"]

Check = Callable[[], Awaitable[str]]


async def run_checks(settings: Settings, mcp_servers: Mapping[str, Any], out: TextIO, *, telegram: bool = True) -> int:
    """Run every check, print `component: ok (detail)` or `component: FAILED (reason)`; 0 if all ok."""
    checks: list[tuple[str, Check]] = []
    if telegram:
        checks.append(("telegram", lambda: _check_telegram(settings)))
    checks.append((f"llm ({settings.llm.provider})", lambda: _check_llm(settings)))
    checks.append((f"store ({settings.store.backend})", lambda: _check_store(settings)))
    failed = 0
    for name, check in checks:
        failed += not await _report(name, check, out)
    if mcp_servers:
        from tools import check_servers

        for result in await check_servers(mcp_servers, timeout=30.0):
            if result.ok:
                _line(out, f"mcp {result.name}", True, f"{len(result.tools)} tools: {', '.join(result.tools)}")
            else:
                failed += 1
                _line(out, f"mcp {result.name}", False, result.reason)
    else:
        _line(out, "mcp", True, "no servers configured")
    return 1 if failed else 0


async def _report(name: str, check: Check, out: TextIO) -> bool:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(60):
            detail = await check()
    except Exception as exc:  # every failure is reported as a line, whatever its kind
        _line(out, name, False, _reason(exc))
        return False
    _line(out, name, True, f"{detail}, {round((time.perf_counter() - started) * 1000)} ms")
    return True


def _line(out: TextIO, name: str, ok: bool, detail: str) -> None:
    out.write(f"{name}: {'ok' if ok else 'FAILED'} ({detail})\n")
    out.flush()


def _reason(exc: BaseException) -> str:
    from ops.logs import redact

    text = str(exc) or type(exc).__name__
    return str(redact(f"{type(exc).__name__}: {text}" if str(exc) else text))


async def _check_telegram(settings: Settings) -> str:
    from telegram import Bot

    bot = Bot(settings.telegram.token, base_url=settings.telegram.api_base_url)
    async with bot:
        me = bot.bot
    return f"@{me.username}"


async def _check_llm(settings: Settings) -> str:
    from llm import ModelRequest, UserRecord, build_chat_model

    llm = settings.llm.model_copy(update={"retry_budget_seconds": 5.0, "max_output_tokens": 16, "stream": False})
    model = build_chat_model(llm, settings.backoff)
    try:
        reply = await model.complete(ModelRequest("Answer with one word.", [UserRecord(text="ping")]))
    finally:
        await model.aclose()
    return f"model {settings.llm.model} answered {len(reply.text)} characters"


async def _check_store(settings: Settings) -> str:
    from stores import build_stores

    store, ingress = build_stores(settings.store, settings.backoff, read_only_ingress=True)
    probe = f"check-probe-{uuid.uuid4().hex}"
    async with store, ingress:
        record = {"seq": 0, "type": "probe", "at": time.time()}
        await store.append(probe, [record])
        loaded = await store.load(probe)
        await store.delete(probe)
        if [item.get("at") for item in loaded] != [record["at"]]:
            raise RuntimeError("the probe record did not read back")
        await ingress.pending()
    return "wrote, read and deleted a probe"
