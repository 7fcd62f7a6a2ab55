#!/usr/bin/env bash
# System packages the test suite drives for real: a PostgreSQL server, a headless Chromium, wrk
# (the load generator of the fault suite's 60 s load test) and a Prometheus server (scrapes the service
# in tests/scenarios/test_metrics.py).
# Installs what is missing with apt-get when run as root (CI, fresh machines); otherwise says what to install.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
[ -n "${TABPIPE_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
  || command -v google-chrome >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
command -v prometheus >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo="sudo"; }
if { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null; then
  echo "installing test dependencies: ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "the tests need: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
