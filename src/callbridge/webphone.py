"""The softphone page at ``/phone``: plain HTML, CSS and JavaScript from ``web/phone/``.

The page is a client of the server like any other: it imports the browser SDK from
``/sdk/callbridge.js`` and talks to ``/ws`` on the same origin (``wss://`` when the page came
over ``https://``). Nothing here knows about calls; this module only serves files.

``/phone`` itself is the page (``index.html``); its assets are under ``/phone/`` and the page
names them with absolute paths, so ``/phone`` and ``/phone/`` both work. The page is not
cached for long (``no-cache``: the browser revalidates with the ETag), so a new server version
is picked up on the next load.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from callbridge.websdk import web_dir

__all__ = ["PHONE_DIR", "install_phone"]

# The repository's web/phone, or where an installed wheel put it (websdk.web_dir).
PHONE_DIR = web_dir("phone")

# The page only needs its own origin: its scripts, /sdk, /ws, and the microphone/camera.
# (No inline script or style; media elements play MediaStreams, which CSP does not restrict.)
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; media-src 'self' blob: mediastream:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _PhoneFiles(StaticFiles):
    """StaticFiles with the page's headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def install_phone(app: FastAPI, directory: Path | None = PHONE_DIR) -> None:
    """Serve ``directory`` (default ``web/phone``) at ``/phone``. Missing files: no route."""
    index = directory / "index.html" if directory else None
    if directory is None or index is None or not index.is_file():
        return  # a build without the page: /phone is a plain 404

    @app.get("/phone", include_in_schema=False)
    async def phone() -> FileResponse:
        return FileResponse(index, headers=_HEADERS)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        # A newcomer opening the server's address finds the phone.
        return RedirectResponse("/phone")

    app.mount("/phone/", _PhoneFiles(directory=directory, html=True), name="phone")
