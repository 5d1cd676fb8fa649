"""``callbridge serve`` settings from a TOML file and CALLBRIDGE_* variables (settings.py):
precedence command line > environment > file > default, errors that say where, secrets from
files, and a real server whose command line holds no secret."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from callbridge import settings
from callbridge.cli import build_parser, main, resolve_data_dir
from callbridge.testing.server import running

TURN = "turn:turn.example.org:3478"


def serve_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(["serve", *argv])
    assert args.command == "serve"
    resolve_data_dir(args)  # as main() does
    return args


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``callbridge serve ARGV`` fails with exit code 2; its one-line error."""
    assert main(["serve", *argv]) == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test run's own CALLBRIDGE_* variables must not leak into these parses."""
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(name)


def test_command_line_beats_environment_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text(
        "port = 9000\n"
        "ring-timeout = 45\n"  # the option's own spelling works too
        "session_grace = 20\n"
        'stun = ["stun:a.example.org:3478", "stun:b.example.org:3478"]\n'
        'allow_webhooks_to = ["10.0.0.0/8"]\n'
        'max_body_bytes = "64k"\n'
        "debug_libraries = true\n"
        'log_format = "json"\n'
    )
    monkeypatch.setenv("CALLBRIDGE_RING_TIMEOUT", "50")
    monkeypatch.setenv("CALLBRIDGE_SESSION_GRACE", "25")
    monkeypatch.setenv("CALLBRIDGE_ALLOW_WEBHOOKS_TO", "hooks.internal, 192.0.2.0/24")
    monkeypatch.setenv("CALLBRIDGE_LOG_LEVEL", "warning")
    args = serve_args(
        ["--config", str(config), "--session-grace", "30", "--stun", "stun:c.example.org:1"]
    )
    assert args.port == 9000  # file over default
    assert args.ring_timeout == 50.0  # environment over file
    assert args.session_grace == 30.0  # command line over both
    assert args.stun == ["stun:c.example.org:1"]  # a list on the command line replaces
    assert args.allow_webhooks_to == ["hooks.internal", "192.0.2.0/24"]  # env list replaces
    assert args.max_body_bytes == 64 * 1024  # through the option's own parser
    assert args.debug_libraries is True
    assert (args.log_format, args.log_level) == ("json", "warning")
    assert args.max_sdp_media == 8 and args.host == "127.0.0.1"  # untouched: defaults


def test_config_from_the_environment_and_paths_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "cb.toml"
    config.write_text('data_dir = "../state"\nport = 9100\nsip_port = 0\n')
    monkeypatch.setenv("CALLBRIDGE_CONFIG", str(config))
    args = serve_args(["--port", "9200"])
    assert args.data_dir == (tmp_path / "state").absolute()
    assert (args.port, args.sip_port) == (9200, 0)
    # $CALLBRIDGE_DATA_DIR (resolved by cli.resolve_data_dir) still wins over the file
    monkeypatch.setenv("CALLBRIDGE_DATA_DIR", str(tmp_path / "from-env"))
    assert serve_args([]).data_dir == tmp_path / "from-env"


def test_an_option_added_later_is_settable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generic over the parser: an option other helpers add needs no edit here."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--frobnicate-limit", type=int, default=3)
    parser.add_argument("--webhook-secret")
    settings.install(parser)
    monkeypatch.setenv("CALLBRIDGE_FROBNICATE_LIMIT", "7")
    monkeypatch.setenv("CALLBRIDGE_WEBHOOK_SECRET", "s3")
    args = parser.parse_args([])
    assert (args.frobnicate_limit, args.webhook_secret) == (7, "s3")
    assert settings.is_secret("webhook_secret") and not settings.is_secret("tls_key")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "port = 9000\nring_timout = 4\n",
            "line 2 (ring_timout): unknown setting; did you mean ring_timeout?",
        ),
        ('\n\nport = "http"\n', "line 3 (port): invalid port 'http': use 1 to 65535"),
        (
            "log_format = 'xml'\n",
            "line 1 (log_format): invalid choice 'xml': use one of text, json",
        ),
        ("stun = 3\n", "line 1 (stun): invalid URL '3': it starts with stun: or stuns:"),
        ("ring_timeout = [1, 2]\n", "line 1 (ring_timeout): takes one value, not an array"),
        ("debug_libraries = 'yes'\n", "line 1 (debug_libraries): 'yes' is not true or false"),
        (
            "[serve]\nport = 1\n",
            "line 1 (serve): the file has no [sections]: put settings at the top (port = 8080)",
        ),
        ("port = \n", "not valid TOML: Invalid value (at line 1, column 8)"),
        ("config = 'x.toml'\n", "line 1 (config): unknown setting"),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    config = tmp_path / "callbridge.toml"
    config.write_text(toml)
    error = usage_error(["--config", str(config)], capsys)
    assert error.startswith(f"callbridge serve: error: {config}")
    assert message in error


def test_bad_environment_and_missing_files_say_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLBRIDGE_MAX_PLAYBACKS", "lots")
    assert usage_error([], capsys).endswith(
        "CALLBRIDGE_MAX_PLAYBACKS=lots: invalid count 'lots': use a whole number, 1 or more"
    )
    monkeypatch.delenv("CALLBRIDGE_MAX_PLAYBACKS")
    monkeypatch.setenv("CALLBRIDGE_DEBUG_LIBRARIES", "maybe")
    assert "'maybe' is not a switch: use 1/true/yes/on" in usage_error([], capsys)
    monkeypatch.delenv("CALLBRIDGE_DEBUG_LIBRARIES")
    assert usage_error(["--config", str(tmp_path / "none.toml")], capsys).endswith(
        f"--config {tmp_path / 'none.toml'}: no such file"
    )
    (tmp_path / "ok.toml").write_text("port = 9000\n")
    assert "spell --config out in full" in usage_error(
        ["--conf", str(tmp_path / "ok.toml")], capsys
    )
    monkeypatch.setenv("CALLBRIDGE_CONFIG", str(tmp_path / "gone.toml"))
    assert usage_error([], capsys).endswith(
        f"CALLBRIDGE_CONFIG {tmp_path / 'gone.toml'}: no such file"
    )
    monkeypatch.delenv("CALLBRIDGE_CONFIG")
    # a secret's value never shows in an error
    monkeypatch.setenv("CALLBRIDGE_TURN_PASSWORD", "hunter2")
    monkeypatch.setenv("CALLBRIDGE_TURN_PASSWORD_FILE", str(tmp_path / "pw"))
    error = usage_error([], capsys)
    assert "both CALLBRIDGE_TURN_PASSWORD and CALLBRIDGE_TURN_PASSWORD_FILE" in error
    assert "hunter2" not in error
    monkeypatch.delenv("CALLBRIDGE_TURN_PASSWORD")
    assert usage_error([], capsys).endswith(f"the secret file {tmp_path / 'pw'} does not exist")


def test_a_misspelt_variable_gets_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLBRIDGE_RING_TIMOUT", "5")
    monkeypatch.setenv("CALLBRIDGE_TEST_SOMETHING", "x")  # others' variables: no noise
    serve_args([])
    err = capsys.readouterr().err
    assert "CALLBRIDGE_RING_TIMOUT is not a setting; did you mean CALLBRIDGE_RING_TIMEOUT?" in err
    assert "CALLBRIDGE_TEST_SOMETHING" not in err


def test_secrets_come_from_files_and_a_command_line_secret_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "turn").write_text("from-file\n")  # one trailing newline dropped
    config = tmp_path / "callbridge.toml"
    config.write_text(
        f'turn = ["{TURN}"]\nturn_username = "relay"\nturn_password_file = "secrets/turn"\n'
    )
    config.chmod(0o600)
    args = serve_args(["--config", str(config)])
    assert (args.turn, args.turn_username, args.turn_password) == ([TURN], "relay", "from-file")
    assert "warning" not in capsys.readouterr().err

    (tmp_path / "credential").write_text("from-env-file")
    monkeypatch.setenv("CALLBRIDGE_TURN_PASSWORD_FILE", str(tmp_path / "credential"))
    assert serve_args(["--config", str(config)]).turn_password == "from-env-file"

    # A secret in a file others can read, and one on the command line, are warned about.
    config.write_text(f'turn = ["{TURN}"]\nturn_username = "relay"\nturn_password = "inline"\n')
    config.chmod(0o644)
    monkeypatch.delenv("CALLBRIDGE_TURN_PASSWORD_FILE")
    assert serve_args(["--config", str(config)]).turn_password == "inline"
    assert f"{config} holds a secret and other users can read it" in capsys.readouterr().err
    serve_args(["--turn", TURN, "--turn-username", "u", "--turn-password", "visible"])
    err = capsys.readouterr().err
    assert "--turn-password on the command line is visible to every local user" in err
    assert "CALLBRIDGE_TURN_PASSWORD_FILE" in err


def test_a_server_started_with_secrets_from_env_and_file_shows_none_in_ps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TURN password from $CALLBRIDGE_TURN_PASSWORD_FILE and the config file's limits
    reach the server; /proc/PID/cmdline (what ps shows) has no secret."""
    secret = "s3cret-turn-credential"
    (tmp_path / "turn.pw").write_text(secret + "\n")
    config = tmp_path / "callbridge.toml"
    config.write_text(f'turn = ["{TURN}"]\nturn_username = "relay"\nmax_body_bytes = "1k"\n')
    monkeypatch.setenv("CALLBRIDGE_TURN_PASSWORD_FILE", str(tmp_path / "turn.pw"))
    # --turn without a password is refused at start: the server running proves it arrived.
    with running(tmp_path / "data", args=["--config", str(config)]) as server:
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert b"--config" in cmdline
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        assert secret.encode() not in environ  # only the file's path is in its environment
        refused = httpx.post(f"{server.url}/v2/calls", content=b"x" * 2048, timeout=5)
        assert refused.status_code == 413  # max_body_bytes = "1k" from the file
    log = server.log()
    assert f"settings from {config}, CALLBRIDGE_TURN_PASSWORD_FILE" in log
    assert secret not in log


def test_media_workers_default_to_the_cores_this_process_may_use() -> None:
    """Issue 15: one media worker per core the server may run on: its CPU affinity (what
    ``taskset`` or a container's cpuset leave it), so a process held to one core gets 1 (the
    media in its own process)."""
    assert serve_args([]).media_workers == len(os.sched_getaffinity(0))
    one_core = min(os.sched_getaffinity(0))
    probe = (
        "from callbridge.cli import build_parser\n"
        "print(build_parser().parse_args(['serve']).media_workers)"
    )
    held = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_core}),
    )
    assert held.stdout.strip() == "1"
