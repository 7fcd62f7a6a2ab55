#!/usr/bin/env bash
# What `make test-container` (tests/container: the Dockerfile built and run) needs: debootstrap (the stand-in
# base image) and buildah (builds the real Dockerfile, chroot isolation). Both need root.
# Installs what is missing with apt-get when run as root (CI, fresh machines); otherwise says what to install.
set -euo pipefail
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v buildah >/dev/null || missing+=(buildah)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo="sudo"; }
if { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null; then
  echo "installing container test dependencies: ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "the container tests need: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
