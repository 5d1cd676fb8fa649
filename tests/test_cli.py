"""The ``callbridge`` command, run for real (``python -m callbridge``) on a SQLite file."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from callbridge.cli import build_parser, main, parse_ttl
from callbridge.cli_serve import server_config
from callbridge.config import ServerConfig
from callbridge.store import Store
from callbridge.testing.server import running, serve

Cli = Callable[..., subprocess.CompletedProcess[str]]


def callbridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callbridge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(tmp_path: Path, data_dir: Path) -> Cli:
    """Run a callbridge command on ``data_dir``, from ``tmp_path``."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return callbridge(*args, "--data-dir", str(data_dir), cwd=tmp_path)

    return run


def db_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'callbridge.db'}"


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit code 2 and a one-line message naming the problem, no traceback."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("callbridge")
    assert message in result.stderr


# users ------------------------------------------------------------------------------------
def test_users_add_prints_the_user_and_users_list_shows_it(cli: Cli, data_dir: Path) -> None:
    added = cli(
        "users",
        "add",
        "alice",
        "--extension",
        "1001",
        "--number",
        "+1 415 555 0100",
        "--display-name",
        "Alice Smith",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (
        "added user alice: extension 1001, number +14155550100, display name 'Alice Smith'"
    )
    assert (data_dir / "callbridge.db").exists()

    listed = cli("users", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "EXTENSION", "NUMBER", "DISPLAY", "NAME"]
    assert row.split() == ["alice", "1001", "+14155550100", "Alice", "Smith"]


def test_users_list_on_an_empty_database_says_how_to_add_one(cli: Cli, data_dir: Path) -> None:
    listed = cli("users", "list")
    assert listed.returncode == 0
    assert f"callbridge users add NAME --extension EXT --data-dir {data_dir}" in listed.stdout


def test_a_duplicate_user_is_refused_with_exit_code_2(cli: Cli) -> None:
    assert cli("users", "add", "alice", "--extension", "1001").returncode == 0
    assert_refused(
        cli("users", "add", "alice", "--extension", "1002"),
        "a user named 'alice' already exists",
    )
    assert_refused(
        cli("users", "add", "bob", "--extension", "1001"),
        "extension 1001 is taken by user 'alice'",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bob", "--extension", "10a"], "invalid extension '10a': use 2 to 8 digits"),
        (["bob", "--extension", "1002", "--number", "4155550100"], "invalid number"),
        (["bob smith", "--extension", "1002"], "invalid user name"),
        (["bob"], "the following arguments are required: --extension"),
    ],
)
def test_bad_user_fields_are_refused_with_exit_code_2(
    cli: Cli, args: list[str], message: str
) -> None:
    assert_refused(cli("users", "add", *args), message)


def test_users_add_processes_started_together_all_succeed(tmp_path: Path, data_dir: Path) -> None:
    """Several processes open a new database at once: one migrates it, all write."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callbridge",
                "users",
                "add",
                f"user{i}",
                "--extension",
                f"20{i}",
                "--data-dir",
                str(data_dir),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    listed = callbridge("users", "list", "--data-dir", str(data_dir), cwd=tmp_path)
    assert len(listed.stdout.splitlines()) == 1 + 6


# tokens -----------------------------------------------------------------------------------
async def test_token_prints_a_login_token_on_its_last_line(cli: Cli, data_dir: Path) -> None:
    assert cli("users", "add", "alice", "--extension", "1001").returncode == 0
    result = cli("token", "alice", "--ttl", "30m")
    assert result.returncode == 0, result.stderr
    *notes, token = result.stdout.splitlines()
    assert "valid until" in notes[-1] and "UTC" in notes[-1] and "30m" in notes[-1]
    async with await Store.open(db_url(data_dir)) as store:
        user = await store.check_token(token)
        assert user.name == "alice"


def test_a_token_for_an_unknown_user_is_refused_with_exit_code_2(cli: Cli, data_dir: Path) -> None:
    assert_refused(cli("token", "carol"), "no user named 'carol'")


@pytest.mark.parametrize("ttl", ["0", "-5", "5x", "1w", "3651d", "h"])
def test_a_bad_ttl_is_refused_with_exit_code_2(
    ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process: argparse refuses before any database is touched.
    assert main(["token", "alice", "--ttl", ttl]) == 2
    assert "invalid ttl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("3600", timedelta(hours=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_ttl_forms(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


# API keys ---------------------------------------------------------------------------------
async def test_apikey_create_prints_the_key_on_its_last_line(cli: Cli, data_dir: Path) -> None:
    result = cli("apikey", "create", "--name", "ci")
    assert result.returncode == 0, result.stderr
    *notes, key = result.stdout.splitlines()
    assert notes and "shown only this once" in notes[-1]
    assert key.startswith("KEY") and len(key) == 43
    async with await Store.open(db_url(data_dir)) as store:
        assert await store.check_api_key(key)

    unnamed = cli("apikey", "create")
    assert unnamed.returncode == 0
    assert unnamed.stdout.splitlines()[-1] != key


# database errors --------------------------------------------------------------------------
def test_an_unusable_database_is_one_line_with_exit_code_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = callbridge("users", "list", "--data-dir", str(blocker / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("callbridge: error: cannot use the database")


def test_a_database_url_password_is_never_printed(tmp_path: Path) -> None:
    url = "sqlite+aiosqlite://user:hunter2@/" + str(tmp_path / "x" / "file" / "db")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("")
    result = callbridge("users", "list", "--database-url", url, cwd=tmp_path)
    assert result.returncode == 1
    assert "hunter2" not in result.stderr + result.stdout


# serve ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--turn", "turn:turn.example.org:3478"], "--turn needs --turn-username"),
        (["--turn-username", "u", "--turn-password", "p"], "need --turn URL"),
        (["--stun", "turn:x:3478"], "invalid URL"),
        (["--port", "0"], "invalid port"),
        (["--ring-timeout", "-1"], "invalid duration"),
        (["--media-address", "my-laptop"], "invalid address"),
        (["--max-connections-per-source", "0"], "invalid count '0'"),
        (["--max-body-bytes", "lots"], "invalid size 'lots'"),
        (["--max-upload-bytes", "0k"], "invalid size '0k'"),
        (["--max-sdp-bytes", "-5"], "invalid size '-5'"),
        (["--max-sdp-media", "x"], "invalid count 'x'"),
        (["--max-candidates-per-leg", "0"], "invalid count"),
        (["--max-playbacks", "0"], "invalid count"),
        (["--max-fetches-per-user", "1.5"], "invalid count"),
        (["--fetch-timeout", "0"], "invalid duration"),
        (["--login-failures-per-minute", "0"], "invalid count"),
        (["--allow-fetch-from", "10.0.0.300"], "invalid address '10.0.0.300'"),
        (["--allow-webhooks-to", "http://hooks.example.org/"], "use a host name"),
        (["--allow-webhooks-to", "10.0.0.0/33"], "invalid address"),
        (["--drain-timeout", "-1"], "invalid duration '-1': use seconds, 0 or more"),
        (["--node-id", "node 1"], "invalid node id"),
        (["--spool-limit", "0"], "invalid count"),
        (["--max-playbacks", "2", "--max-playbacks-per-user", "3"], "raise --max-playbacks"),
        (["--max-fetches", "1", "--max-fetches-per-user", "2"], "raise --max-fetches"),
    ],
)
def test_serve_refuses_bad_options_before_starting(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


def test_serve_options_fill_every_issue_10_setting() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "serve",
            "--max-connections-per-source", "3",
            "--max-body-bytes", "64k",
            "--max-upload-bytes", "2M",
            "--max-sdp-bytes", "16384",
            "--max-sdp-media", "4",
            "--max-candidates-per-leg", "10",
            "--max-playbacks", "9",
            "--max-playbacks-per-user", "2",
            "--max-fetches", "5",
            "--max-fetches-per-user", "1",
            "--fetch-timeout", "7.5",
            "--login-failures-per-minute", "6",
            "--allow-fetch-from", "127.0.0.1",
            "--allow-fetch-from", "10.1.2.3/8",
            "--allow-fetch-from", "Media.Example.org.",
            "--allow-webhooks-to", "::1",
            "--drain-timeout", "0",
            "--node-id", "node-1",
            "--spool-limit", "500",
        ]
    )  # fmt: skip
    config = server_config(args)
    assert (config.max_connections_per_source, config.max_body_bytes) == (3, 65536)
    assert (config.max_upload_bytes, config.max_sdp_bytes, config.max_sdp_media) == (
        2 * 1024 * 1024,
        16384,
        4,
    )
    assert config.max_candidates_per_leg == 10
    assert (config.max_playbacks, config.max_playbacks_per_user) == (9, 2)
    assert (config.max_fetches, config.max_fetches_per_user, config.fetch_timeout) == (5, 1, 7.5)
    assert config.login_failures_per_minute == 6
    assert config.allow_fetch_from == ["127.0.0.1", "10.0.0.0/8", "media.example.org"]
    assert config.allow_webhooks_to == ["::1"]
    assert (config.drain_timeout, config.node_id, config.spool_limit) == (0.0, "node-1", 500)


@pytest.mark.parametrize("value", ["0.04", "5.5", "0", "-1", "fast", "nan"])
def test_serve_refuses_a_sip_t1_outside_50ms_to_5s(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--sip-t1", value]) == 2
    assert f"invalid SIP T1 {value!r}: use seconds, 0.05 to 5" in capsys.readouterr().err


def test_serve_sip_t1_sets_the_config_and_says_what_it_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    assert server_config(parser.parse_args(["serve", "--sip-t1", "0.05"])).sip_t1 == 0.05
    assert server_config(parser.parse_args(["serve", "--sip-t1", "5"])).sip_t1 == 5.0
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    assert "RFC 3261's T1" in " ".join(capsys.readouterr().out.split())


def test_serve_defaults_are_the_server_config_defaults() -> None:
    assert server_config(build_parser().parse_args(["serve"])) == ServerConfig()


async def test_serve_on_an_empty_database_prints_commands_that_work(
    tmp_path: Path, data_dir: Path
) -> None:
    async with serve(data_dir) as server:  # the hint is printed before the server listens
        output = server.log()
    assert "session.login" in output
    assert f"ws://127.0.0.1:{server.port}/ws" in output
    commands = [
        line.strip() for line in output.splitlines() if line.strip().startswith("callbridge ")
    ]
    assert [c.split()[1] for c in commands] == ["users", "token"]

    results = [callbridge(*shlex.split(c)[1:], cwd=tmp_path) for c in commands]
    assert all(r.returncode == 0 for r in results), results
    async with await Store.open(db_url(data_dir)) as store:
        assert (await store.check_token(results[-1].stdout.splitlines()[-1])).name == "alice"


def test_serve_with_users_prints_no_newcomer_hint(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    assert cli("users", "add", "alice", "--extension", "1001").returncode == 0
    with running(data_dir) as server:  # "listening on" is logged before /healthz answers
        output = server.log()
    assert "listening on" in output
    assert "no users yet" not in output
