"""Baseline bots the Telegram benchmark measures the assistant against."""
