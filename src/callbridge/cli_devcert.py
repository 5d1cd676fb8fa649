"""``callbridge dev-cert``: a self-signed certificate for trying callbridge over HTTPS on a LAN.

    callbridge dev-cert [NAME_OR_IP ...] [--out-dir DIR] [--days N] [--force]

Browsers give the microphone and camera only to secure pages: ``https://`` or
``http://localhost``. A phone or a second computer on the LAN opening ``http://192.168.1.20:8080``
gets no microphone, so the softphone page (``/phone``) cannot call. This command writes
``cert.pem`` and ``key.pem`` (an ECDSA P-256 key, file mode 0600) for ``localhost``,
``127.0.0.1``, ``::1`` and every name or address given, and prints the ``callbridge serve``
line that uses them (``--tls-cert``/``--tls-key``: HTTPS and WSS on the same port).

The certificate signs itself and no certificate authority is made: nothing is added to any
trust store, and there is no CA key to leak. Browsers warn once per origin (accept, or import
``cert.pem`` as trusted). It is for development and LAN trials; a public server wants a real
certificate (a reverse proxy with Let's Encrypt, docs/softphone.md). The command does not look
at this machine's interfaces: it certifies exactly the names given.

Exit codes: 0 written, 2 bad arguments or the files exist (``--force`` replaces them).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import shlex
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from callbridge.cli import EXIT_OK, PROG, CommandError
from callbridge.config import DEFAULT_DATA_DIR

__all__ = ["add_dev_cert_command", "make_dev_cert"]

ALWAYS = ("localhost", "127.0.0.1", "::1")  # this machine, whatever else is named
MAX_DAYS = 397  # browsers (Apple's first) refuse server certificates valid for longer
# RFC 1123 host names: labels of letters, digits and '-', not starting or ending with '-'.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def add_dev_cert_command(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``dev-cert`` to the ``callbridge`` subcommands (no database involved)."""
    del database  # the signature every command module shares; no database here
    parser = commands.add_parser(
        "dev-cert",
        help="make a self-signed HTTPS certificate for trying callbridge on a LAN",
        description="Write cert.pem and key.pem, a self-signed certificate for localhost, "
        "127.0.0.1, ::1 and the names or addresses given (e.g. this machine's LAN address "
        "and its .local name), and print the `callbridge serve` line that uses them. "
        "For development and LAN trials only; browsers warn once.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME_OR_IP",
        help="further host names or IP addresses the certificate is for, "
        "e.g. 192.168.1.20 mybox.local",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_DATA_DIR / "tls",
        metavar="DIR",
        help="where to write cert.pem and key.pem (default: ./%(default)s)",
    )
    parser.add_argument(
        "--days",
        type=_days,
        default=MAX_DAYS,
        help=f"validity in days, 1-{MAX_DAYS} (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.set_defaults(run=_dev_cert)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"days must be 1-{MAX_DAYS}, got {days}")
    return days


def _subject_names(names: list[str]) -> list[x509.GeneralName]:
    """``localhost``, the loopback addresses and ``names``: IP addresses as IP entries, the
    rest checked as DNS names (a typo here would only show up as a browser warning)."""
    result: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in [*ALWAYS, *names]:
        name = raw.strip().strip("[]").lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        labels = name.removeprefix("*.").rstrip(".").split(".")
        if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
            raise CommandError(f"not a host name or IP address: {raw!r}")
        result.append(x509.DNSName(name))
    return result


def make_dev_cert(names: list[str], days: int = MAX_DAYS) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key, PEM: ``(cert, key)``.

    Server use only (``serverAuth``, not a CA): trusting it trusts this one certificate, never
    anything it could sign.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject_names = _subject_names(names)
    # The common name is only shown to people (browsers match the subjectAltName entries):
    # the first name given, since that is the one the LAN will use.
    common = subject_names[len(ALWAYS)] if len(subject_names) > len(ALWAYS) else subject_names[0]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callbridge development"),
            x509.NameAttribute(NameOID.COMMON_NAME, str(common.value)),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks on a LAN differ
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(subject_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _dev_cert(args: argparse.Namespace) -> int:
    out: Path = args.out_dir
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    existing = [str(p) for p in (cert_path, key_path) if p.exists()]
    if existing and not args.force:
        raise CommandError(f"{' and '.join(existing)} exist: --force replaces them")
    cert_pem, key_pem = make_dev_cert(list(args.names), args.days)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path.write_bytes(cert_pem)
    # The key is created 0600 (not chmod-ed after writing: no moment where others can read it).
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)  # an existing file (--force) keeps its mode otherwise

    cert = x509.load_pem_x509_certificate(cert_pem)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    shown = [str(n.value) for n in sans]
    lan = [str(n) for n in args.names]
    host = "0.0.0.0" if lan else "127.0.0.1"  # LAN names are useless unless it listens there
    serve = (
        f"{PROG} serve --host {host} "
        f"--tls-cert {shlex.quote(str(cert_path))} --tls-key {shlex.quote(str(key_path))}"
    )
    opened = lan[0].strip("[]") if lan else "localhost"
    if ":" in opened:
        opened = f"[{opened}]"
    print(f"wrote {cert_path} (certificate) and {key_path} (private key, keep it private)")
    print(f"  for: {', '.join(shown)}")
    print(f"  valid until {cert.not_valid_after_utc:%Y-%m-%d}, SHA-256 {fingerprint}")
    print("self-signed: browsers warn once per address; accept, or import cert.pem as trusted.")
    print("serve over HTTPS and WSS with:")
    print(f"  {serve}")
    print(f"then open https://{opened}:8080/phone")
    return EXIT_OK
