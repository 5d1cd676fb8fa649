"""README.md's examples, run as written against a real server.

The README walks a newcomer through one terminal session in the repository: ``sh`` blocks that
run ``.venv/bin/callbridge`` and the Python files that the ``python`` blocks define (each block
names its file on its first line, ``# first_call.py``). This test plays that session in one
bash, in a fresh directory whose ``./callbridge-data`` (the commands' default data directory)
is the data directory of a server started with :func:`callbridge.testing.serve`, and whose
``.venv/bin/python`` and ``.venv/bin/callbridge`` run this interpreter. The one change to the
text is the server's address: ``127.0.0.1:8080`` becomes the test server's. Then it checks what
each example says it does, and the server's own check on the way out (nothing left live, no
traceback in its log).

The ``test_*.py`` block ("Testing your app") is run as pytest runs it: its test functions are
awaited with a fresh ``tmp_path``. The ``./scripts/`` blocks are not run: they set up a
virtualenv and install packages (network, root).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import shlex
import sys
import wave
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from callbridge.media.players import HOLD_MUSIC_NOTES
from callbridge.testing import Server, serve, tone_level_db

README = Path(__file__).resolve().parent.parent / "README.md"
README_ADDRESS = "127.0.0.1:8080"  # where the README's server listens (`./scripts/serve`)
DATA_DIR = "callbridge-data"  # the CLI's default --data-dir, relative to the current directory
SESSION_TIMEOUT = 90.0  # seconds for the whole shell session (it takes about 15)
MARKER = "@@ README.md:"  # printed before each shell block, to split the session's output
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"# (\w+\.py)\n")


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced code block of the README."""

    lang: str
    text: str
    line: int  # of the opening fence, for messages

    @property
    def file_name(self) -> str | None:
        """The file a ``python`` block is saved as (its first line: ``# name.py``)."""
        found = FILE_NAME.match(self.text)
        return found[1] if found else None

    @property
    def runs_commands(self) -> bool:
        """A shell block of the session (the ``./scripts/`` ones set up the machine)."""
        return self.lang == "sh" and ".venv/bin/" in self.text


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [Block(m[1], m[2], text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def python_block(name: str) -> Block:
    (block,) = [b for b in readme_blocks() if b.lang == "python" and b.file_name == name]
    return block


@dataclass(frozen=True, slots=True)
class Session:
    """What the README's shell session printed, block by block."""

    outputs: dict[int, str]  # README line of the block -> its stdout
    workdir: Path

    def output_of(self, command: str) -> str:
        """The stdout of the one shell block containing ``command``."""
        blocks = [b for b in readme_blocks() if b.runs_commands and command in b.text]
        assert len(blocks) == 1, f"{len(blocks)} shell blocks run {command!r}"
        return self.outputs[blocks[0].line]


def install_venv_shims(workdir: Path) -> None:
    """``.venv/bin/python`` and ``.venv/bin/callbridge`` in ``workdir``, running this
    interpreter (with its packages), as ``./scripts/serve`` leaves them in the repository."""
    bin_dir = workdir / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = shlex.quote(sys.executable)
    for name, command in (("python", python), ("callbridge", f"{python} -m callbridge")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)


async def run_session(server: Server, workdir: Path) -> Session:
    """Save the README's Python files in ``workdir`` and run its shell blocks there, in order,
    in one bash (so ``$ALICE`` from one block reaches the next, as in a terminal)."""
    address = f"{server.host}:{server.port}"
    install_venv_shims(workdir)
    script = ["set -euo pipefail"]
    for block in readme_blocks():
        if block.lang == "python" and block.file_name and not block.file_name.startswith("test_"):
            (workdir / block.file_name).write_text(block.text.replace(README_ADDRESS, address))
        elif block.runs_commands:
            script += [f"echo '{MARKER}{block.line}'", block.text.replace(README_ADDRESS, address)]
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        "\n".join(script),
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), SESSION_TIMEOUT)
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 0, f"the README session failed ({proc.returncode}):\n{out}\n{err}"
    assert err == "", f"the README session wrote to stderr:\n{err}"
    outputs: dict[int, str] = {}
    for part in out.split(MARKER)[1:]:
        line, _, printed = part.partition("\n")
        outputs[int(line)] = printed
    return Session(outputs, workdir)


def wav_samples(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def wav_rate(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate()


def test_every_readme_example_is_run_by_this_test() -> None:
    blocks = readme_blocks()
    python = [b for b in blocks if b.lang == "python"]
    session = "\n".join(b.text for b in blocks if b.runs_commands)
    assert python and session
    for block in python:
        name = block.file_name
        assert name is not None, f"README.md:{block.line}: no '# name.py' first line"
        assert name.startswith("test_") or f"python {name}" in session, (
            f"README.md:{block.line}: no shell block runs {name}"
        )
    for block in blocks:
        assert block.lang in ("python", "sh"), f"README.md:{block.line}: a {block.lang!r} block"
        if block.lang == "sh" and not block.runs_commands:
            assert block.text.startswith("./scripts/"), f"README.md:{block.line} is not run"


async def test_a_newcomer_follows_the_readme_users_first_call_conference_and_rest(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / DATA_DIR, session_grace=5) as server:
        session = await run_session(server, tmp_path)

        async with server.store() as store:
            users = {
                u.name: (u.extension, u.number, u.display_name) for u in await store.list_users()
            }
            assert users == {
                "alice": ("1001", "+14155550101", "Alice"),
                "bob": ("1002", None, None),
                "carol": ("1003", None, None),
            }

            # The first call: alice's call ended because she hung up; bob heard her 440 Hz tone
            # and, while she held, the hold music, and never his own 1000 Hz.
            assert session.output_of("python first_call.py") == "ended: hangup\n"
            heard = session.workdir / "bob-hears.wav"
            rate, pcm = wav_rate(heard), wav_samples(heard)
            assert len(pcm) > 2 * rate, f"bob recorded {len(pcm) / rate:.2f} s"
            assert tone_level_db(pcm, rate, 440) > -35
            assert max(tone_level_db(pcm, rate, f) for f in HOLD_MUSIC_NOTES) > -35
            assert tone_level_db(pcm, rate, 1000) < -50

            # The conference: bob and carol joined, and its end (once the welcome had played:
            # tests/test_examples.py measures that) disconnected them.
            assert session.output_of("python conference.py") == (
                "conference ended; Bob and Carol were disconnected\n"
            )

            # REST: the application the telnyx SDK created is in the server's database.
            printed = session.output_of("python rest.py")
            found = re.fullmatch(r"application: (\d+)\n", printed)
            assert found, printed
            app = await store.get_application(found[1])
            assert app is not None
            assert (app.application_name, app.webhook_event_url) == (
                "front desk",
                "http://127.0.0.1:9000/webhooks",
            )


async def test_the_testing_your_app_example_passes(tmp_path: Path) -> None:
    block = python_block("test_first_call.py")
    namespace: dict[str, Any] = {"__name__": "test_first_call"}
    exec(compile(block.text, f"README.md:{block.line}", "exec"), namespace)
    tests: list[Callable[[Path], Coroutine[Any, Any, None]]] = [
        fn
        for name, fn in namespace.items()
        if name.startswith("test_") and inspect.iscoroutinefunction(fn)
    ]
    assert tests, "the example defines no async test"
    for i, test in enumerate(tests):
        await test(tmp_path / str(i))
