"""``/docs`` (Swagger UI) and ``/redoc`` work offline: their assets come from the server.

The HTML checks run on the server's HTTP app in process; the Chromium check opens both pages
inside a loopback-only network namespace (``tests/browser/docs_scenario.py``), where a page
that needed a CDN would render nothing, and checks that everything the pages loaded came from
the server and that the page's Content-Security-Policy refused the one outside request ReDoc
makes.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from callbridge.config import ServerConfig
from callbridge.server import create_app
from test_browser import _preflight

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "browser" / "docs_scenario.py"
BASE = "http://127.0.0.1:8080"  # the in-process app's address (no socket)
INNER_LIMIT = 40.0  # seconds for the browser scenario (it takes about 6)
ASSET_URL = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")
EXPECTED_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


@pytest.fixture(name="http")
async def http_fixture() -> AsyncIterator[httpx.AsyncClient]:
    """The server's HTTP app in process (pages and files need no running server)."""
    transport = httpx.ASGITransport(app=create_app(ServerConfig()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_page_names_only_assets_the_server_serves(
    http: httpx.AsyncClient, page: str
) -> None:
    response = await http.get(page)
    html = response.text
    assert "<html" in html.lower(), html[:200]
    assert "https://" not in html and "http://" not in html, html
    assert "default-src 'self'" in response.headers["content-security-policy"]
    urls = [a or b for a, b in ASSET_URL.findall(html)]
    assets = [u for u in urls if u.startswith("/docs-assets/")]
    assert assets, f"{page} names no local asset: {urls}"
    assert "/openapi.json" in urls
    for url in assets:
        response = await http.get(urljoin(f"{BASE}{page}", url))
        name = url.rsplit("/", 1)[1]
        assert response.status_code == 200, (url, response.status_code)
        assert response.headers["content-type"].startswith(EXPECTED_TYPES[name]), (
            url,
            response.headers["content-type"],
        )
        assert len(response.content) > 1000, url


async def test_an_unknown_docs_asset_is_a_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/docs-assets/nothing.js")).status_code == 404
    assert (await http.get("/docs-assets/../pyproject.toml")).status_code == 404


def test_chromium_renders_docs_and_redoc_with_no_network_beyond_loopback() -> None:
    _preflight()
    python, scenario = shlex.quote(sys.executable), shlex.quote(str(SCENARIO))
    inner = f"ip link set lo up && exec {python} {scenario} --timeout {INNER_LIMIT}"
    cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", inner]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=INNER_LIMIT + 15, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["error"] is None, result
    assert result["swagger_operations"] > 20, result
    assert result["redoc_operations"] > 20, result
    # blob: URLs are ReDoc's search worker, made in the page.
    loaded_from = {urlsplit(u).hostname for u in result["loaded"] if not u.startswith("blob:")}
    assert loaded_from == {"127.0.0.1"}, result["loaded"]
    # ReDoc's footer always asks for its logo at cdn.redoc.ly: the page's CSP refuses it
    # before it reaches the network (Chromium reports the attempt, then the refusal).
    for url in result["requested"]:
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname != "127.0.0.1":
            assert any(url in m and "Content Security Policy" in m for m in result["console"]), (
                url,
                result["console"],
            )
