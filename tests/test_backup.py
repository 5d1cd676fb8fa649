"""``callbridge backup DEST`` (cli_backup.py): taken while a server runs, it restores into a
server that serves the same users (their login tokens work), the same CDRs and the same media;
refusals say why and what to do."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from api_helpers import audio_site_fixture  # noqa: F401  (the fixture)
from callbridge.cli import main
from callbridge.client import Call, Phone
from callbridge.testing.server import serve
from parties import until_async


def copied_media(dest: Path, name: str) -> bytes:
    """The backup holds the database and media only, and its row for ``name`` points at the
    copy of the file; the copy's bytes."""
    assert sorted(p.name for p in dest.iterdir()) == ["callbridge.db", "media"]
    with sqlite3.connect(dest / "callbridge.db") as db:
        (path,) = db.execute("SELECT path FROM media WHERE media_name = ?", (name,)).fetchone()
    db.close()
    assert Path(path) == dest / "media" / name
    return Path(path).read_bytes()


async def test_a_backup_taken_while_serving_restores_users_cdrs_and_media(
    tmp_path: Path, audio_site: str
) -> None:
    dest = tmp_path / "backup"
    async with serve(tmp_path / "live", users=["alice", "bob"], session_grace=2) as live:
        alice, bob = live.users["alice"], live.users["bob"]
        key = await live.api_key("ops")
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=live.url, headers=auth, timeout=10) as http:
            upload = {"media_url": f"{audio_site}/prompt.wav", "media_name": "greeting"}
            assert (await http.post("/v2/media", json=upload)).status_code == 200
            original = (await http.get("/v2/media/greeting/download")).content
        async with Phone(live.ws_url, alice.token) as a, Phone(live.ws_url, bob.token) as b:
            incoming: asyncio.Queue[Call] = asyncio.Queue()
            b.on("incoming", incoming.put_nowait)
            call = await a.call(bob.extension)
            answering = await asyncio.wait_for(incoming.get(), 10)
            await answering.answer()
            await call.wait_for("answered", timeout=10)
            await call.hangup()
            await answering.wait_for("ended", timeout=10)
        async with live.store() as store:  # the CDR is written just after the call ends
            await until_async(lambda: store.get_cdr(call.id))
        # The server is still running (and writing: its WAL holds recent pages).
        code = await asyncio.to_thread(
            main, ["backup", "--data-dir", str(live.data_dir), str(dest)]
        )
        assert code == 0
        assert live.proc.poll() is None

    assert copied_media(dest, "greeting") == original

    async with serve(dest, session_grace=2) as restored:
        again = Phone(restored.ws_url, alice.token)
        info = await again.login()  # the old token logs in
        await again.close()
        assert info.user["name"] == "alice"
        async with restored.store() as store:
            cdr = await store.get_cdr(call.id)
        assert cdr is not None
        assert (cdr.caller, cdr.callee, cdr.answered_at is not None) == ("alice", "bob", True)
        async with httpx.AsyncClient(base_url=restored.url, timeout=10) as http:
            got = await http.get("/v2/media/greeting/download", headers=auth)  # the old key
        assert got.status_code == 200 and got.content == original


def test_backup_refusals_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "nothing-here"
    assert main(["backup", "--data-dir", str(empty), str(tmp_path / "b")]) == 2
    assert f"there is no database at {empty / 'callbridge.db'}" in capsys.readouterr().err

    data = tmp_path / "data"
    assert main(["users", "add", "carol", "--extension", "1003", "--data-dir", str(data)]) == 0
    taken = tmp_path / "taken"
    (taken / "x").mkdir(parents=True)
    assert main(["backup", "--data-dir", str(data), str(taken)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert main(["backup", "--data-dir", str(data), str(data / "inside")]) == 2
    assert "is inside the data directory" in capsys.readouterr().err

    url = "postgresql+asyncpg://cb:hunter2@db.internal/callbridge"
    assert main(["backup", "--database-url", url, str(tmp_path / "pg")]) == 1
    err = capsys.readouterr().err
    assert "pg_dump --format=custom --file=callbridge.dump postgresql://cb:***@db.internal" in err
    assert "hunter2" not in err and not (tmp_path / "pg").exists()

    # a backup of the backup works too: the restore path (callbridge backup --data-dir B DIR)
    assert main(["backup", "--data-dir", str(data), str(tmp_path / "b1")]) == 0
    assert main(["backup", "--data-dir", str(tmp_path / "b1"), str(tmp_path / "b2")]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--data-dir", str(tmp_path / "b2")]) == 0
    assert "carol" in capsys.readouterr().out
