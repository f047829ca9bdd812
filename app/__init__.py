"""The composition root: builds every part from settings, starts and stops them in one order, `--check`."""

from __future__ import annotations
