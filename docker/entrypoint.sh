#!/usr/bin/env bash
# Container start: prepare cgroups, warm the Go cache once (kept if /opt/codeapi/gocache is a volume),
# then run the command (the API by default).
set -euo pipefail
/app/.venv/bin/codeapi prepare-host
/app/.venv/bin/codeapi warm-go-cache
exec "$@"
