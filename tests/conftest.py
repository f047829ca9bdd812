"""Shared test configuration."""

import os

# As main.py does: python-telegram-bot's durations as timedelta, so RetryAfter raises no
# deprecation warning (which filterwarnings=error would turn into an error).
os.environ.setdefault("PTB_TIMEDELTA", "1")
