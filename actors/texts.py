"""What the assistant says by itself (not the model): one place to read and change it."""

__all__ = [
    "BUSY",
    "DEAD_LETTER",
    "EMPTY_ANSWER",
    "FORGET_ALL_DONE",
    "FORGET_DONE",
    "FORGET_UNKNOWN",
    "FORGET_USAGE",
    "HELP",
    "MEMORY_EMPTY",
    "MEMORY_LIST",
    "MEMORY_NO_USER",
    "MEMORY_UNAVAILABLE",
    "MODEL_REJECTED",
    "MODEL_UNAVAILABLE",
    "NOTHING_TO_STOP",
    "NOT_ALLOWED",
    "RESET",
    "START",
    "STOPPED",
    "STORE_UNAVAILABLE",
    "TIMEZONE_CURRENT",
    "TIMEZONE_SET",
    "TIMEZONE_UNKNOWN",
    "TURN_TIMED_OUT",
    "UNREADABLE",
]

START = (
    "Hello! I'm your personal assistant. Write to me in plain words and I'll answer, "
    "using my tools when they help.\n\n"
    "/new (or /reset) starts a fresh conversation; /help shows this again."
)

HELP = (
    "Write to me in plain words and I'll answer; I remember our conversation.\n\n"
    "/new or /reset: forget this conversation and start afresh\n"
    "/memory: what I remember about you; /forget ID or /forget all to delete it\n"
    "/timezone Area/City: your time zone (e.g. /timezone Europe/Berlin)\n"
    "/stop: stop the answer I am writing\n"
    "/help: this message\n\n"
    "In groups, mention me or reply to one of my messages."
)

RESET = "Started a new conversation. What shall we talk about?"

MODEL_UNAVAILABLE = "The model is unavailable right now. Please try again in a moment."

MODEL_REJECTED = "The model refused this request (the operator has been told). Please try again later."

DEAD_LETTER = "Sorry, something went wrong while handling that message, so I skipped it. You can keep writing."

BUSY = "I'm still working on your earlier messages. Please slow down a little and send this one again."

NOT_ALLOWED = "Sorry, this assistant is private. Your Telegram user id is {user_id}."

UNREADABLE = "I can only read text messages for now. Please write your message as text."

EMPTY_ANSWER = "(The model answered with nothing. Please ask again, perhaps in other words.)"

STORE_UNAVAILABLE = "I can't reach my storage right now; I'll answer as soon as I can."

TURN_TIMED_OUT = "This is taking too long (the model or a tool is too slow right now). Please try again in a moment."

MEMORY_LIST = "What I remember about you ({count}); /forget ID deletes one, /forget all every one:"

MEMORY_EMPTY = (
    'I haven\'t saved anything about you yet. Ask me to remember something, e.g. "remember that I prefer tea".'
)

MEMORY_NO_USER = "I can't tell who you are in this chat, so I keep no memory here."

MEMORY_UNAVAILABLE = "I can't reach my memory right now. Please try again in a moment."

FORGET_USAGE = "Tell me what to forget: /forget ID (the id from /memory) or /forget all."

FORGET_DONE = "Forgotten: {text}"

FORGET_UNKNOWN = "You have no saved fact with the id {fact_id}. /memory lists them with their ids."

FORGET_ALL_DONE = "I forgot everything I had saved about you ({count} facts)."

TIMEZONE_CURRENT = (
    "Your time zone is {zone}: it is {now} there. Change it with /timezone Area/City, e.g. /timezone Europe/Berlin."
)

TIMEZONE_SET = "Your time zone is now {zone}: it is {now} there."

TIMEZONE_UNKNOWN = (
    'I don\'t know the time zone "{name}". Use an IANA name such as Europe/Berlin, America/New_York or Asia/Tokyo.'
)

STOPPED = "(stopped)"
"""Ends what was written of an answer that /stop cut short (on a line of its own), or is all of it."""

NOTHING_TO_STOP = "Nothing to stop: I'm not working on anything right now."
