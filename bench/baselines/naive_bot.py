"""The naive LLM bot a user writes in an afternoon: python-telegram-bot + the OpenAI SDK.

Each message calls the model with the chat's history and replies with the answer. Default PTB
settings, so updates are handled one at a time: a 1 s model makes every other chat wait.
History lives in a dict in memory and is lost on restart.

With NAIVE_CONCURRENT=1 it sets PTB's `concurrent_updates(True)` (256 updates at once): the first
fix such a user finds, and the anchor of the benchmark's many-chats figure.

Reads TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL, LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, NAIVE_CONCURRENT.
"""

from __future__ import annotations

import os
from collections import defaultdict

from openai import AsyncOpenAI
from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

client = AsyncOpenAI(base_url=os.environ.get("LLM_BASE_URL") or None, api_key=os.environ.get("LLM_API_KEY", ""))
MODEL = os.environ.get("LLM_MODEL") or "gpt-4o-mini"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
histories: dict[int, list[dict[str, str]]] = defaultdict(list)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet, and forget the chat's history."""
    if update.effective_chat and update.message:
        histories.pop(update.effective_chat.id, None)
        await update.message.reply_text("Hi! Ask me anything.")


async def chat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask the model with the chat's history and reply with its answer."""
    if not (update.message and update.message.text and update.effective_chat):
        return
    history = histories[update.effective_chat.id]
    history.append({"role": "user", "content": update.message.text})
    try:
        response = await client.chat.completions.create(model=MODEL, messages=[SYSTEM, *history])  # type: ignore[list-item]
        answer = response.choices[0].message.content or "(no answer)"
    except Exception as exc:  # the naive bot tells the user and carries on
        answer = f"Sorry, something went wrong: {exc}"
    history.append({"role": "assistant", "content": answer})
    await update.message.reply_text(answer)


def main() -> None:
    """Poll until SIGINT/SIGTERM."""
    builder = (
        Application.builder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ.get("TELEGRAM_API_BASE_URL", "https://api.telegram.org/bot"))
    )
    if os.environ.get("NAIVE_CONCURRENT") == "1":
        builder = builder.concurrent_updates(True)
    application = builder.build()
    application.add_handler(CommandHandler("start", start))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, chat))
    application.run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
