"""What the assistant says by itself (not the model): one place to read and change it."""

__all__ = [
    "BUDGET_EXHAUSTED",
    "BUSY",
    "DEAD_LETTER",
    "EMPTY_ANSWER",
    "HELP",
    "MODEL_CURRENT",
    "MODEL_REJECTED",
    "MODEL_SWITCHED",
    "MODEL_UNAVAILABLE",
    "MODEL_UNKNOWN",
    "NOT_ALLOWED",
    "RESET",
    "START",
    "UNREADABLE",
    "USAGE",
    "USAGE_ALL_USERS",
    "USAGE_BUDGET",
    "USAGE_NO_BUDGET",
]

START = (
    "Hello! I'm your personal assistant. Write to me in plain words and I'll answer, "
    "using my tools when they help.\n\n"
    "/new (or /reset) starts a fresh conversation; /help shows this again."
)

HELP = (
    "Write to me in plain words and I'll answer; I remember our conversation.\n\n"
    "/new or /reset: forget this conversation and start afresh\n"
    "/model: show or switch the model of this chat\n"
    "/usage: tokens and cost used today and this month\n"
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

BUDGET_EXHAUSTED = (
    "You have used today's budget of {budget} tokens, so I can't ask the model until it renews "
    "at midnight ({zone}), in {wait}."
)

MODEL_CURRENT = "This chat uses `{current}`.\nModels you can pick: {models}.\nSwitch with /model NAME."

MODEL_SWITCHED = "This chat now uses `{model}`."

MODEL_UNKNOWN = "There is no model called `{name}` here. You can pick: {models}."

USAGE = "Your usage\nToday ({day}): {today}\nThis month ({month}): {this_month}\n{budget}"
"""`today` and `this_month` are usage lines: tokens (input, cached, output) and the cost where priced."""

USAGE_BUDGET = "Daily budget: {remaining} of {budget} tokens left; it renews at midnight ({zone}), in {wait}."

USAGE_NO_BUDGET = "Daily budget: unlimited."

USAGE_ALL_USERS = "All users this month: {total}"
