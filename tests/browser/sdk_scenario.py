"""Run a group of callbridge-web flows in Chromium against a real server; print ``RESULT``.

Run by ``tests/test_web_sdk.py`` in a loopback-only network namespace (as
``tests/browser/scenario.py``)::

    unshare --net --pid --fork --kill-child -- \
        sh -c 'ip link set lo up && exec python tests/browser/sdk_scenario.py --group calls'

One server and one browser per group; each flow gets fresh pages and Python parties and its
own time limit, so one failing flow does not hide the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import tempfile
import time
import traceback
import wave
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: `browser.*` imports

from browser.sdk_harness import CHROMIUM, CHROMIUM_ARGS, USERS, Flow, Kit, run_flow
from callbridge.testing.server import Server, create_user


def groups() -> dict[str, dict[str, Flow]]:
    from browser import sdk_flows_calls, sdk_flows_media, sdk_flows_more, sdk_flows_video

    # The media flows share the calls launch: each launch of Chromium costs seconds.
    calls = {**sdk_flows_calls.FLOWS, **sdk_flows_media.FLOWS}
    return {"calls": calls, "more": sdk_flows_more.FLOWS, "video": sdk_flows_video.FLOWS}


def group_args(group: str, tmp: Path) -> list[str]:
    """Chromium flags of a group's launch beyond CHROMIUM_ARGS. The video group's pages
    switch to Chromium's fake devices: three cameras (the third gives MJPEG frames; the
    second's Y16 frames are never encoded), and microphones that play a wav file of
    one tone (``sdk_flows_video.FAKE_MIC_HZ``), so the far party can tell them apart."""
    if group != "video":
        return []
    from browser.sdk_flows_video import FAKE_MIC_HZ

    wav = tmp / "fake-mic.wav"
    rate = 48000
    t = np.arange(rate * 2) / rate  # 2 s, a whole number of periods: it loops cleanly
    pcm = (np.sin(2 * np.pi * FAKE_MIC_HZ * t) * 0.5 * 32767).astype("<i2")
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    fake = "--use-fake-device-for-media-stream"
    return [f"{fake}=device-count=3", f"--use-file-for-fake-audio-capture={wav}"]


async def run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from playwright.async_api import async_playwright

    names = [n for _, n in socket.if_nameindex()]
    if names != ["lo"]:
        raise SystemExit(f"sdk_scenario.py must run in a loopback-only namespace, not {names}")
    flows = groups()[args.group]
    if args.only:
        flows = {k: v for k, v in flows.items() if k in args.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="callbridge-websdk-") as tmp:
        server = Server(Path(tmp) / "data", session_grace=args.grace)
        try:
            await asyncio.to_thread(server.wait_ready, 20)
            users = {}
            async with server.store() as store:
                for name, ext, number, _ in USERS:
                    users[name] = await create_user(
                        store, name, ext, number=number, display_name=name.title(),
                        ttl=timedelta(hours=1),
                    )  # fmt: skip
            async with async_playwright() as pw:
                extra = group_args(args.group, Path(tmp))
                replaced = {a.split("=", 1)[0] for a in extra}
                launch_args = [a for a in CHROMIUM_ARGS if a.split("=", 1)[0] not in replaced]
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=launch_args + extra,
                    timeout=20_000,
                )
                result["browser_version"] = browser.version
                kit = Kit(server, users, browser)
                try:
                    for name, flow in flows.items():
                        result["flows"][name] = await run_flow(kit, flow, args.flow_limit)
                finally:
                    await asyncio.wait_for(browser.close(), 10)
                result["console"] = kit.console[-200:]
        finally:
            result["server_returncode"] = server.stop(5)
            text = server.log()
            result["server_traceback"] = "Traceback" in text
            result["server_log_tail"] = text[-5000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True)
    parser.add_argument("--only", default="")
    parser.add_argument("--timeout", type=float, default=200.0)
    parser.add_argument("--flow-limit", type=float, default=40.0)
    parser.add_argument("--grace", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result: dict[str, Any] = {"error": None, "flows": {}}
    start = time.monotonic()
    status = 0
    try:
        asyncio.run(asyncio.wait_for(run(args, result), args.timeout))
    except BaseException as exc:  # everything is reported
        result["error"] = "".join(traceback.format_exception(exc))
        status = 1
    result["seconds"] = round(time.monotonic() - start, 2)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
