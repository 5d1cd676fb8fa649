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
