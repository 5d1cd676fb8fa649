"""deploy/: the systemd unit passes ``systemd-analyze verify`` and every CALLBRIDGE_* variable
the unit and the Containerfile set is a real setting; the image builds where a container
engine runs (not on the machine these tests were written on: it has a docker client and no
daemon, so that test skips there, saying so)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from callbridge import settings
from callbridge.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "callbridge.service"
CONTAINERFILE = DEPLOY / "Containerfile"


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = commands.choices["serve"]
    return serve


def variables(text: str) -> set[str]:
    return set(re.findall(r"\b(CALLBRIDGE_[A-Z_]+)=", text))


def test_the_unit_and_the_containerfile_set_only_real_settings(tmp_path: Path) -> None:
    unit, image = UNIT.read_text(), CONTAINERFILE.read_text()
    names = (variables(unit) | variables(image)) - {settings.CONFIG_ENV}
    assert {"CALLBRIDGE_DATA_DIR", "CALLBRIDGE_TURN_PASSWORD_FILE", "CALLBRIDGE_HOST"} <= names
    secret = tmp_path / "secret"
    secret.write_text("x\n")
    environ = {name: str(secret) if name.endswith("_FILE") else "8080" for name in names}
    found = settings.read_settings(serve_parser(), None, environ)
    assert {s.source for s in found} | {"CALLBRIDGE_DATA_DIR"} == names
    assert "LoadCredential=turn-password:" in unit and "%d/turn-password" in unit
    assert re.search(r"^USER callbridge", image, re.MULTILINE)
    assert "EXPOSE 8080/tcp 5060/udp 5060/tcp" in image and "/healthz" in image


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_verifies(tmp_path: Path) -> None:
    """With the commented credential lines on, and ExecStart pointed at a program that exists
    (the unit names /opt/callbridge/bin/callbridge, installed by the operator)."""
    text = UNIT.read_text().replace("/opt/callbridge/bin/callbridge", "/bin/true")
    text = re.sub(r"^#(LoadCredential|Environment)=", r"\1=", text, flags=re.MULTILINE)
    unit = tmp_path / "callbridge.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr.strip()) == (0, "")


def container_engine() -> str | None:
    for engine in ("podman", "docker"):
        if shutil.which(engine) is None:
            continue
        probe = subprocess.run([engine, "info"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return engine
    return None


@pytest.mark.skipif(container_engine() is None, reason="no container engine runs here")
def test_the_image_builds() -> None:
    engine = container_engine()
    assert engine is not None
    root = DEPLOY.parent
    done = subprocess.run(
        [engine, "build", "-f", str(CONTAINERFILE), "-t", "callbridge:test", str(root)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
