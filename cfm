#!/usr/bin/env bash
# Set up cfm in .venv on first use, then run it: ./cfm chat, ./cfm serve, ./cfm --help
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/scripts/bootstrap.sh"
bootstrap_venv ""
exec "$here/.venv/bin/cfm" "$@"
