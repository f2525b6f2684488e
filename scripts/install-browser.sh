#!/bin/sh
# Install what the real-browser tests (tests/test_browser.py, marker `browser`) need:
#   * Debian's `chromium` (apt-get, only when /usr/bin/chromium is missing), and
#   * pip `playwright` into the given virtualenv (only when it does not import there yet).
#
# Playwright's own browser download (`playwright install`) is NOT used: the tests launch Debian's
# chromium with executable_path=/usr/bin/chromium, so no binary comes from outside the Debian archive.
#
# Usage: scripts/install-browser.sh [VENV]        (default: $VENV, else .venv in the repo)
# Idempotent; safe to run while another apt-get runs (waits up to 10 minutes for the dpkg lock).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${VENV:-$here/.venv}}
python=$venv/bin/python

if [ ! -x "$python" ]; then
    echo "install-browser: no Python at $python (give the virtualenv as the first argument)" >&2
    exit 2
fi

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
    else
        sudo=
    fi
    echo "install-browser: installing Debian's chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -q
    $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium fonts-dejavu-core
else
    echo "install-browser: /usr/bin/chromium is there ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
fi

if "$python" -c "import playwright.sync_api" 2>/dev/null; then
    echo "install-browser: playwright is installed in $venv"
else
    echo "install-browser: pip install playwright into $venv"
    "$python" -m pip install -q playwright
fi
