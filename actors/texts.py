"""What the assistant says by itself (not the model): one place to read and change it."""

__all__ = [
    "BUDGET_EXHAUSTED",
    "BUSY",
    "CANNOT_SEE_IMAGES",
    "DEAD_LETTER",
    "EMPTY_ANSWER",
    "FILE_DOWNLOAD_FAILED",
    "FILE_PROBLEMS",
    "FILE_TOO_BIG",
    "FILE_TOO_SLOW",
    "FORGET_ALL_DONE",
    "FORGET_DONE",
    "FORGET_UNKNOWN",
    "FORGET_USAGE",
    "HELP",
    "MEMORY_EMPTY",
    "MEMORY_LIST",
    "MEMORY_NO_USER",
    "MEMORY_UNAVAILABLE",
    "MODEL_CURRENT",
    "MODEL_REJECTED",
    "MODEL_SWITCHED",
    "MODEL_UNAVAILABLE",
    "MODEL_UNKNOWN",
    "NOTHING_TO_STOP",
    "NOT_ALLOWED",
    "NOT_READ",
    "REMINDERS_HEADER",
    "REMINDERS_NONE",
    "REMINDERS_OFF",
    "REMINDER_FAILED",
    "REMINDER_LATE",
    "REMINDER_LATE_REPEATING",
    "RESET",
    "START",
    "STOPPED",
    "STORE_UNAVAILABLE",
    "TIMEZONE_CURRENT",
    "TIMEZONE_SET",
    "TIMEZONE_UNKNOWN",
    "TURN_TIMED_OUT",
    "UNREADABLE",
    "USAGE",
    "USAGE_ALL_USERS",
    "USAGE_BUDGET",
    "USAGE_NO_BUDGET",
    "VOICE_EMPTY",
    "VOICE_FAILED",
    "VOICE_OFF",
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
    "/model: show or switch the model of this chat\n"
    "/usage: tokens and cost used today and this month\n"
    "/reminders: the reminders set in this chat\n"
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

UNREADABLE = "I can't read this kind of message. I can read text, voice messages, photos, PDFs and text files."

NOT_READ = {
    "video": "I can't watch videos. Send a photo, or tell me in words what you need.",
    "video_note": "I can't watch video messages. Send a voice message or write instead.",
    "animation": "I can't watch animations. Send a photo, or tell me in words what you need.",
    "sticker": "I can't read stickers. Tell me in words what you need.",
    "location": "I can't use locations yet. Tell me the place in words.",
    "venue": "I can't use locations yet. Tell me the place in words.",
    "contact": "I can't read shared contacts. Write the details as text if you want me to see them.",
    "poll": "I can't read polls. Write the question as text.",
    "dice": "I can't read dice throws; what would you like to know?",
}
"""A short explanation per kind of message the assistant does not read (Telegram's field names)."""

VOICE_OFF = "Voice messages are turned off here, so I can't listen to this one. Please write instead."

VOICE_FAILED = "I couldn't transcribe that voice message (speech is failing). Please try again or write instead."

VOICE_EMPTY = "I couldn't hear any words in that voice message."

FILE_TOO_BIG = "{name} is too big for me: I can read files up to {limit} MB."

FILE_DOWNLOAD_FAILED = "I couldn't download {name} from Telegram. Please send it again in a moment."

FILE_TOO_SLOW = "Reading {name} took too long, so I gave up on it."

FILE_PROBLEMS = {
    "not_an_image": "{name} is not an image I can open.",
    "corrupt_image": "{name} seems damaged: I couldn't open the image.",
    "too_large_image": "{name} has too many pixels for me to open. A smaller version would work.",
    "unsupported": "I can't read {name}: I read text files (Markdown, CSV, JSON, code), PDFs and images.",
    "scanned": "{name} has no text layer (a scanned PDF?), so I can't read it. Send its pages as photos instead.",
    "corrupt": "{name} seems damaged: I couldn't read it.",
    "encrypted": "{name} is protected by a password, so I can't read it.",
    "too_large": "{name} expands to far more than it looks when opened, so I didn't read it.",
}
"""Why a file could not be read, by the problem `llm.vision` / `llm.documents` name."""

CANNOT_SEE_IMAGES = "(This model can't see images, so I answered without looking at yours; I'll leave images out.)"
"""The one line before the answer of the turn in which the model turned out to refuse images."""

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
REMINDERS_HEADER = "Reminders in this chat:"

REMINDERS_NONE = 'No reminders in this chat. Ask me, for example: "remind me tomorrow at 9 to call the bank".'

REMINDERS_OFF = "Reminders are not available here."

REMINDER_LATE = "(Late: this was due {due}, while I was not running.)"

REMINDER_LATE_REPEATING = (
    "(Late: this was due {due}, while I was not running, and came due {missed} more time(s) since. "
    "It goes on as scheduled.)"
)

REMINDER_FAILED = "Sorry, something went wrong with a reminder, so I skipped it: {text}"

STOPPED = "(stopped)"
"""Ends what was written of an answer that /stop cut short (on a line of its own), or is all of it."""

NOTHING_TO_STOP = "Nothing to stop: I'm not working on anything right now."
