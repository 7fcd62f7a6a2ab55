#!/usr/bin/env bash
# System packages the test suite drives for real: a PostgreSQL server, a headless Chromium, wrk
# (the load generator of the fault suite's 60 s load test) and a Prometheus server (scrapes the service
# in tests/scenarios/test_metrics.py) and a Redis server (`tabpipe stream`'s tests start their own).
# Installs what is missing (scripts/apt_missing.sh), or says what to install.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
[ -n "${TABPIPE_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
  || command -v google-chrome >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
exec bash "$(dirname "$0")/apt_missing.sh" "test dependencies" ${missing[@]+"${missing[@]}"}
