"""What operators see: JSON logging and redaction, EMF metrics, `/healthz`, memory tuning."""

from __future__ import annotations
