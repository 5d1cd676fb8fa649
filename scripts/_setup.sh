# Shared by scripts/serve and scripts/test: make ./.venv with callbridge installed (editable).
# Re-installs only when pyproject.toml changed since the last install.
setup_venv() {
  local extra="${1:-}"
  local spec="."
  [ -n "$extra" ] && spec=".[$extra]"
  if ! command -v python3 >/dev/null; then
    echo "python3 (>= 3.11) is required" >&2
    exit 1
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    # Debian splits venv/ensurepip out of the base package.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x .venv/bin/python ] || python3 -m venv .venv
  local stamp=".venv/.callbridge-installed-${extra:-base}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e "$spec"
    touch "$stamp"
  fi
}

# tests/test_browser.py drives Debian's Chromium with playwright (never a downloaded browser).
# Installs it when /usr/bin/chromium is missing; needs root (as in CI), else only warns and the
# browser test fails saying what is missing.
setup_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "warning: /usr/bin/chromium is missing; as root: apt-get install -y chromium" >&2
    return 0
  fi
  echo "installing Debian chromium (for tests/test_browser.py) ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# tests/test_store.py and tests/test_webhooks.py run against SQLite and against a real PostgreSQL
# (SQLite stays the default for serve). This starts a throwaway PostgreSQL cluster from Debian's
# packages (installed when missing, which needs root) in a temporary directory, listening only on
# 127.0.0.1 (and a unix socket in that directory), with a password-protected superuser, and
# exports CALLBRIDGE_TEST_POSTGRES_URL for pytest; each test then creates and drops its own
# database there. As root the cluster runs as the `postgres` user (initdb refuses root); as
# another user it runs as that user. Without PostgreSQL and without root it only warns, and the
# PostgreSQL tests fail saying what is missing. A URL already in CALLBRIDGE_TEST_POSTGRES_URL is
# kept (your own server; or `skip` to skip those tests knowingly). stop_postgres ends the cluster.
# A developer can run it in a shell too: `. scripts/_setup.sh && setup_postgres`.
setup_postgres() {
  [ -n "${CALLBRIDGE_TEST_POSTGRES_URL:-}" ] && return 0
  local bindir
  bindir=$(_postgres_bindir)
  if [ -z "$bindir" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "warning: PostgreSQL is missing; as root: apt-get install -y postgresql" \
        "(until then the PostgreSQL store tests fail)" >&2
      return 0
    fi
    echo "installing Debian postgresql (for the PostgreSQL store tests) ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bindir=$(_postgres_bindir)
    if [ -z "$bindir" ]; then
      echo "warning: postgresql was installed but no initdb was found" >&2
      return 0
    fi
  fi
  local dir port password python=python3
  [ -x .venv/bin/python ] && python=.venv/bin/python
  dir=$(mktemp -d "${TMPDIR:-/tmp}/callbridge-pg.XXXXXX")
  password=$("$python" -c 'import secrets; print(secrets.token_hex(16))')
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '%s\n' "$password" >"$dir/pwfile"
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$dir"
    as=(runuser -u postgres --)
  fi
  # fsync and friends are off: the cluster lives for one test run, speed matters, safety not.
  if ! "${as[@]}" "$bindir/initdb" -D "$dir/data" -U callbridge --pwfile="$dir/pwfile" \
      --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    ! "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -s start -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; then
    echo "warning: could not start PostgreSQL (logs in $dir); the PostgreSQL store tests will fail" >&2
    rm -f "$dir/pwfile"
    return 0
  fi
  rm -f "$dir/pwfile"
  _CALLBRIDGE_PG_DIR=$dir
  _CALLBRIDGE_PG_CTL="$bindir/pg_ctl"
  export CALLBRIDGE_TEST_POSTGRES_URL="postgresql+asyncpg://callbridge:$password@127.0.0.1:$port/postgres"
}

stop_postgres() {
  [ -n "${_CALLBRIDGE_PG_DIR:-}" ] || return 0
  local as=()
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$_CALLBRIDGE_PG_CTL" -D "$_CALLBRIDGE_PG_DIR/data" -m immediate -w -s stop || true
  rm -rf "$_CALLBRIDGE_PG_DIR"
  unset _CALLBRIDGE_PG_DIR _CALLBRIDGE_PG_CTL CALLBRIDGE_TEST_POSTGRES_URL
}

_postgres_bindir() {
  local initdb
  initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1) || true
  [ -n "$initdb" ] && dirname "$initdb"
  return 0
}

# Text to speech (conference.speak, REST speak) runs Debian's espeak-ng. Installed when missing
# (as root, as in CI); otherwise only a warning: speaking then fails with `invalid_audio`
# saying espeak-ng is missing, and everything else works.
setup_espeak() {
  command -v espeak-ng >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "warning: espeak-ng is missing (text to speech); as root: apt-get install -y espeak-ng" >&2
    return 0
  fi
  echo "installing Debian espeak-ng (text to speech) ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
}

# tests/test_sip_peers.py and the SIP tests drive real SIP peers that no one here wrote: SIPp
# (Debian `sip-tester`) and baresip (Debian `baresip-core`). Installed when missing (as root, as
# in CI); otherwise only a warning, and those tests skip saying what to install.
setup_sip() {
  command -v sipp >/dev/null && command -v baresip >/dev/null && command -v sipsak >/dev/null \
    && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "warning: SIPp/baresip/sipsak are missing (SIP tests skip); as root:" \
      "apt-get install -y sip-tester baresip-core sipsak" >&2
    return 0
  fi
  echo "installing Debian sip-tester, baresip-core and sipsak (for the SIP tests) ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester baresip-core sipsak >/dev/null
}
