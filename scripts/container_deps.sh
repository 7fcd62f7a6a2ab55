#!/usr/bin/env bash
# What `make test-container` (tests/container: the Dockerfile built and run) needs: debootstrap (the stand-in
# base image) and buildah (builds the real Dockerfile, chroot isolation). Both need root.
# Installs what is missing (scripts/apt_missing.sh), or says what to install.
set -euo pipefail
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v buildah >/dev/null || missing+=(buildah)
exec bash "$(dirname "$0")/apt_missing.sh" "container test dependencies" ${missing[@]+"${missing[@]}"}
