#!/usr/bin/env bash
# System packages the test suite drives for real: a PostgreSQL server, a headless Chromium and wrk
# (the load generator of the fault suite's 60 s load test).
# Installs what is missing (scripts/apt_missing.sh), or says what to install.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
[ -n "${TABPIPE_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
  || command -v google-chrome >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
exec bash "$(dirname "$0")/apt_missing.sh" "test dependencies" ${missing[@]+"${missing[@]}"}
