"""More flows (transfer, multi-call, reconnect, conferences): see sdk_flows_calls.py."""

from __future__ import annotations

from browser.sdk_harness import Flow

FLOWS: dict[str, Flow] = {}
