"""The runnable examples in ``examples/``, run as a user runs them against a live server.

Each example is started as ``python examples/NAME.py ARGS`` in a fresh directory, with the
server's address in ``CALLBRIDGE_WS`` / ``CALLBRIDGE_URL`` and the users' login tokens (and an
API key) as arguments, against one server from :func:`callbridge.testing.serve` with users
alice, bob and carol (extensions 1001, 1002, 1003, as the examples and the README use). The
test then checks what the example printed and, by analysis, what its parties heard. The
README's blocks of the same names are these files, character for character.
"""

from __future__ import annotations

import asyncio
import os
import re
import runpy
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from callbridge.errors import RemoteError
from callbridge.media.players import HOLD_MUSIC_NOTES
from callbridge.store import Cdr, Store
from callbridge.testing import Server, rms_dbfs, serve, tone_level_db
from parties import until_async
from test_readme import python_block, wav_rate, wav_samples

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUN_LIMIT = 60.0  # seconds for one example (they take 3 to 8)
HEARD, SILENT = -35.0, -50.0  # dBFS: a tone clearly there / not there
ALICE, BOB, CAROL = 440.0, 1000.0, 1400.0  # the tones the examples' parties send
SPEECH = -40.0  # dBFS of what is left of a 100 ms window once the tones are taken out
WINDOW = 0.1  # seconds

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    data = tmp_path_factory.mktemp("examples")
    async with serve(data, users=["alice", "bob", "carol"]) as server:
        yield server


async def run_example(server: Server, workdir: Path, name: str, *args: str) -> tuple[int, str]:
    """Run ``examples/name`` in ``workdir``; its exit status and stdout (stderr must be empty
    when it succeeds)."""
    env = {
        **os.environ,
        "CALLBRIDGE_WS": server.ws_url,
        "CALLBRIDGE_URL": server.url,
        "PYTHONUNBUFFERED": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), RUN_LIMIT)
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode != 0 or err == "", f"{name} wrote to stderr:\n{err}"
    return proc.returncode or 0, out + err


def tokens(server: Server, *names: str) -> list[str]:
    return [server.users[name].token for name in names]


def speech_seconds(pcm: npt.NDArray[np.int16], rate: int, tones: tuple[float, ...]) -> float:
    """How long something other than ``tones`` (speech) is heard: the 100 ms windows whose
    level, once the tones' frequencies are taken out, is over ``SPEECH``."""
    size = int(rate * WINDOW)
    heard = 0
    for start in range(0, len(pcm) - size + 1, size):
        window = pcm[start : start + size].astype(np.float64) * np.hanning(size)
        spectrum = np.fft.rfft(window)
        freqs = np.fft.rfftfreq(size, 1 / rate)
        for tone in tones:
            spectrum[np.abs(freqs - tone) < 40] = 0
        heard += rms_dbfs(np.fft.irfft(spectrum, size)) > SPEECH
    return heard * WINDOW


def test_the_readme_examples_are_the_example_files() -> None:
    for name in ("first_call.py", "conference.py"):
        assert python_block(name).text == (EXAMPLES / name).read_text(), (
            f"README.md's {name} differs from examples/{name}: copy the file into the README"
        )


async def test_first_call_bob_hears_alice_and_the_hold_music(
    server: Server, tmp_path: Path
) -> None:
    status, out = await run_example(
        server, tmp_path, "first_call.py", *tokens(server, "alice", "bob")
    )
    assert (status, out) == (0, "ended: hangup\n")
    heard = tmp_path / "bob-hears.wav"
    rate, pcm = wav_rate(heard), wav_samples(heard)
    assert len(pcm) > 2 * rate, f"bob recorded {len(pcm) / rate:.2f} s"
    assert tone_level_db(pcm, rate, ALICE) > HEARD
    assert max(tone_level_db(pcm, rate, f) for f in HOLD_MUSIC_NOTES) > HEARD
    assert tone_level_db(pcm, rate, BOB) < SILENT  # not his own voice


async def test_conference_the_guests_hear_each_other_and_the_whole_welcome(
    server: Server, tmp_path: Path
) -> None:
    status, out = await run_example(
        server, tmp_path, "conference.py", *tokens(server, "alice", "bob", "carol")
    )
    assert (status, out) == (0, "conference ended; Bob and Carol were disconnected\n")
    heard = tmp_path / "bob-conference.wav"
    rate, pcm = wav_rate(heard), wav_samples(heard)
    assert tone_level_db(pcm, rate, CAROL) > HEARD
    assert tone_level_db(pcm, rate, BOB) < -40  # the mix leaves him out (Opus residue aside)
    # "Welcome, Bob and Carol." is about 1.4 s of voice (espeak-ng); the conference ended
    # after it: most of it was heard, and the last 100 ms were quiet again.
    assert speech_seconds(pcm, rate, (CAROL,)) >= 1.0
    assert speech_seconds(pcm[-int(rate * WINDOW) :], rate, (CAROL,)) == 0


async def test_ivr_and_queue_an_agent_gets_the_caller_and_learns_who_it_is(
    server: Server, tmp_path: Path
) -> None:
    key = await server.api_key("examples")
    caller, agent = tokens(server, "alice", "bob")
    status, out = await run_example(server, tmp_path, "ivr_queue.py", key, caller, agent)
    assert status == 0, out
    found = re.fullmatch(
        r"agent: got 1001 from queue front after (\d+) s\ncaller: ended, hangup\n", out
    )
    assert found, out
    heard = tmp_path / "agent-hears.wav"
    rate, pcm = wav_rate(heard), wav_samples(heard)
    assert tone_level_db(pcm, rate, ALICE) > HEARD  # the caller's voice
    assert tone_level_db(pcm, rate, BOB) < SILENT
    # The caller's CDR says who took the call, from which queue.
    async with server.store() as store:
        record = await until_async(lambda: caller_record(store))
    assert (record.answered_user, record.queue_name) == ("bob", "front"), record


async def caller_record(store: Store) -> Cdr | None:
    return next((c for c in await store.list_cdrs() if c.destination == "5000"), None)


@pytest.mark.parametrize(
    ("name", "usage"),
    [
        ("first_call.py", "ALICE_TOKEN BOB_TOKEN"),
        ("conference.py", "ALICE_TOKEN BOB_TOKEN CAROL_TOKEN"),
        ("ivr_queue.py", "API_KEY CALLER_TOKEN AGENT_TOKEN"),
    ],
)
def test_an_example_run_without_its_arguments_says_how_to_run_it(
    name: str, usage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In process (as ``python NAME`` runs it: ``__main__``), sparing a start of Python.
    monkeypatch.setattr(sys, "argv", [name])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert exited.value.code == f"usage: python {name} {usage}"


async def test_an_example_given_a_wrong_token_is_told_it_is_invalid(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_WS", server.ws_url)
    main = runpy.run_path(str(EXAMPLES / "first_call.py"))["main"]
    with pytest.raises(RemoteError) as err:
        await main("not-a-token", server.users["bob"].token)
    assert err.value.code == "invalid_token", err.value
