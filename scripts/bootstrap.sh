# Sourced by ./cfm and ./run-tests: make .venv with the project installed in it.
# Usage: bootstrap_venv EXTRAS   (EXTRAS: "" or "test")
set -euo pipefail

bootstrap_venv() {
    local extras=$1 root py stamp want
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    py=${PYTHON:-python3}
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "cfm needs Python 3.11 or newer as '$py' (set PYTHON=/path/to/python3.11)." >&2
        exit 1
    fi
    if [ ! -x "$root/.venv/bin/python" ]; then
        if ! "$py" -m venv "$root/.venv" >/dev/null 2>&1; then
            rm -rf "$root/.venv"
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "Installing python3-venv (Debian ships venv separately)…" >&2
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
                "$py" -m venv "$root/.venv"
            else
                echo "Python's venv module is missing: run 'sudo apt-get install python3-venv'." >&2
                exit 1
            fi
        fi
    fi
    # Reinstall only when pyproject.toml changed since the last install of these extras.
    stamp="$root/.venv/.cfm-installed${extras:+-$extras}"
    want=$(cksum < "$root/pyproject.toml")
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "Setting up .venv (first run takes a minute)…" >&2
        # pip's output goes to a log, shown only when something fails.
        local log="$root/.venv/install.log"
        if ! { "$root/.venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
               "$root/.venv/bin/python" -m pip install --disable-pip-version-check \
                   -e "$root${extras:+[$extras]}"; } >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            echo "Installing cfm failed; the whole log is in $log" >&2
            exit 1
        fi
        echo "$want" > "$stamp"
    fi
}
