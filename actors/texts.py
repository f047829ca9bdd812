"""What the assistant says by itself (not the model): one place to read and change it."""

__all__ = [
    "BUSY",
    "DEAD_LETTER",
    "EMPTY_ANSWER",
    "HELP",
    "MODEL_REJECTED",
    "MODEL_UNAVAILABLE",
    "NOTHING_TO_STOP",
    "NOT_ALLOWED",
    "RESET",
    "START",
    "STOPPED",
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

STOPPED = "(stopped)"
"""Ends what was written of an answer that /stop cut short (on a line of its own), or is all of it."""

NOTHING_TO_STOP = "Nothing to stop: I'm not working on anything right now."
