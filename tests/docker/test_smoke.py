"""Runs the container smoke test (smoke.py) where a Docker engine answers; skips elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = Path(__file__).with_name("smoke.py")


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_image_answers_a_message_and_stops_cleanly() -> None:
    result = subprocess.run([sys.executable, str(SMOKE)], capture_output=True, text=True, timeout=1750, check=False)
    output = result.stdout + result.stderr
    if result.stdout.startswith("SKIP:"):
        pytest.skip(result.stdout.strip().removeprefix("SKIP: "))
    assert result.returncode == 0, output
    assert "PASS:" in result.stdout, output
