"""The browser SDK (``callbridge-web``, ``web/sdk/``) served at ``/sdk/``.

A page imports it with no build step::

    import { Phone } from "/sdk/callbridge.js";

``/sdk/callbridge.js`` re-exports the modules under ``/sdk/src/``; ``/sdk/callbridge.d.ts``
has the types. The files come from the repository's ``web/sdk`` (a source checkout or an
editable install) or, for an installed wheel, from ``<prefix>/share/callbridge/web/sdk``
(pyproject.toml's data-files). Answers are ``no-cache`` (revalidated by ETag): a new server
version's SDK is picked up on the next page load, and the modules never mix versions.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["SDK_DIR", "install_sdk", "web_dir"]


def web_dir(name: str) -> Path | None:
    """The directory of ``web/<name>`` (``sdk``, ``phone``): in the source tree, else where
    an installed wheel put it; ``None`` when neither has it."""
    candidates = [
        Path(__file__).resolve().parents[2] / "web" / name,  # src/callbridge/ -> repo root
        Path(sysconfig.get_path("data")) / "share" / "callbridge" / "web" / name,
        Path(sys.prefix) / "share" / "callbridge" / "web" / name,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


SDK_DIR = web_dir("sdk")

_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Modules may be imported by pages of other origins (a page served elsewhere talking to
    # this server's /ws): the SDK is public code.
    "Access-Control-Allow-Origin": "*",
}


class _SdkFiles(StaticFiles):
    """StaticFiles with JavaScript's MIME type (``import`` needs it) and the SDK's headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path.endswith(".js"):
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        elif path.endswith(".d.ts"):
            response.headers["Content-Type"] = "application/typescript; charset=utf-8"
        response.headers.update(_HEADERS)
        return response


def install_sdk(app: FastAPI, directory: Path | None = SDK_DIR) -> None:
    """Serve ``directory`` (default: ``web/sdk``) at ``/sdk/``. Without it: no route."""
    if directory is None or not (directory / "callbridge.js").is_file():
        return
    app.mount("/sdk/", _SdkFiles(directory=directory), name="sdk")
