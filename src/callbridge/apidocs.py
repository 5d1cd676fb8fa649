"""The interactive API documentation, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working
offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
access (or behind a strict firewall) they stay blank. The same pages here take their scripts,
style sheet and favicon from the ``fastapi-offline`` package (PyPI; its ``static/`` folder
ships ``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js`` and a favicon, and
its only dependency is FastAPI), served at ``/docs-assets/``. The HTML is FastAPI's
(``get_swagger_ui_html``, ``get_redoc_html``) with those URLs, ReDoc without Google Fonts, and
Swagger UI without its online validator badge, and a Content-Security-Policy that keeps the
browser from loading anything the server does not serve.

The assets are public and versioned with the installed package: they are cached for a day.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["ASSETS_DIR", "ASSETS_PATH", "install_docs"]

ASSETS_PATH = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
_CACHE = "public, max-age=86400"  # a day: the files change only with the package
# The pages may load nothing from elsewhere: ReDoc's "API docs by Redocly" footer asks
# cdn.redoc.ly for its logo whatever the options (it hides the image when that fails); the
# browser refuses that request instead of sending it. Both UIs start from an inline script and
# inject inline styles; ReDoc's search runs in a blob: worker.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'self'"
)


class _AssetFiles(StaticFiles):
    """StaticFiles with JavaScript's current MIME type and a cache lifetime."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path.endswith(".js"):
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        response.headers["Cache-Control"] = _CACHE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve ``docs_url`` and ``redoc_url`` with local assets. ``app`` must be built with
    ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages would otherwise take the paths)."""
    assert app.docs_url is None and app.redoc_url is None, "build the app without its CDN docs"
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_PATH, _AssetFiles(directory=ASSETS_DIR), name="docs-assets")

    def asset(request: Request, name: str) -> str:
        # root_path: the server may be mounted under a prefix behind a reverse proxy.
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            # validatorUrl None: no badge fetched from validator.swagger.io.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = _CSP
        return page

    if oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = _CSP
        return page
