"""``/ws`` encoders of the wire_conferences device events (filled in by the core redesign)."""

from __future__ import annotations

__all__: list[str] = []
