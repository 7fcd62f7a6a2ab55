#!/usr/bin/env bash
# `apt_missing.sh WHAT PACKAGE...`: installs the Debian packages named (the ones a caller found missing) with
# apt-get when run as root or with passwordless sudo (CI, fresh machines); otherwise says what to install.
set -euo pipefail
what="$1"; shift
[ $# -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo="sudo"; }
if { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null; then
  echo "installing ${what}: $*"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
else
  echo "${what} missing: $* (e.g. sudo apt-get install $*)" >&2
  exit 1
fi
