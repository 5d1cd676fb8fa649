"""``/docs`` and ``/redoc`` in Chromium, inside a loopback-only network namespace.

Run by ``tests/test_apidocs.py`` under ``unshare --net --pid`` (nothing but ``lo`` exists, so a
page that needed a CDN would stay blank): starts a server, opens both pages, waits for the
operations to be rendered and records every URL the pages asked for. Prints one line,
``RESULT {json}``: the operation counts, the URLs requested and loaded, the console messages
(a request the Content-Security-Policy refused is reported there) and any error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import Request, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: `browser.*` imports

from browser.sdk_harness import CHROMIUM, CHROMIUM_ARGS
from callbridge.testing import serve

RENDER_LIMIT_MS = 15_000  # the operations list appears in about a second


async def scenario(result: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with serve(Path(tmp) / "data") as server, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                requested: list[str] = result["requested"]

                def on_request(request: Request) -> None:
                    requested.append(request.url)

                page.on("request", on_request)
                page.on("requestfinished", lambda request: result["loaded"].append(request.url))
                page.on("console", lambda message: result["console"].append(message.text))
                await page.goto(f"{server.url}/docs")
                # Swagger UI: one .opblock per operation, drawn from /openapi.json.
                await page.wait_for_selector(".opblock", timeout=RENDER_LIMIT_MS)
                result["swagger_operations"] = await page.locator(".opblock").count()
                await page.goto(f"{server.url}/redoc")
                # ReDoc: the side menu has an item per operation (collapsed under its tag).
                operations = "li[data-item-id*='/operation/']"
                await page.wait_for_selector(operations, state="attached", timeout=RENDER_LIMIT_MS)
                result["redoc_operations"] = await page.locator(operations).count()
            finally:
                await browser.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args()
    result: dict[str, Any] = {"requested": [], "loaded": [], "console": [], "error": None}
    try:
        await asyncio.wait_for(scenario(result), args.timeout)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
