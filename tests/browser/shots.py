"""Where the browser tests write their screenshots.

The pictures in docs/img are part of the documentation: a test run must not rewrite them (each
run differs by a few pixels, so every run left the working tree dirty). They are re-taken on
purpose, by setting ``CALLBRIDGE_SCREENSHOTS`` to a directory (relative to the repository)::

    CALLBRIDGE_SCREENSHOTS=docs/img .venv/bin/pytest tests/test_web_phone.py -k call

Otherwise a test's screenshots go where it asks (its tmp dir); a request for a directory under
docs/ is redirected to ``FALLBACK``, overwritten by each run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "CALLBRIDGE_SCREENSHOTS"
ROOT = Path(__file__).resolve().parents[2]
FALLBACK = Path(tempfile.gettempdir()) / "callbridge-screenshots"


def screenshots_dir(requested: Path | None) -> Path | None:
    """The directory to write screenshots to (None: take none)."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        return (ROOT / chosen).resolve()  # an absolute path stays what it is
    if requested is None:
        return None
    if requested.resolve().is_relative_to(ROOT / "docs"):
        return FALLBACK  # docs/ only on purpose (ENV)
    return requested
