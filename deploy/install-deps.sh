#!/usr/bin/env bash
# Installs everything Trygg needs to build, run and test on Debian 12.
# Idempotent: packages already present are left alone. Needs root (or sudo).
#   --runtime-only  only what `make` needs (the image's build stage)
#   --compose       only what `make compose-test` adds (docker.io, debootstrap)
set -euo pipefail

# Build and runtime libraries (see README "Dependencies" for why each).
BUILD_PKGS=(
  build-essential pkg-config
  libuv1-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler
  libpq-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libssl-dev
  libcmocka-dev
)
# Local Postgres for `make run` / `make test`; psql and pgbench come with it.
PG_PKGS=(postgresql-15 postgresql-client-15)
# Test and tooling: curl for integration tests, clang for libFuzzer and
# sanitizers, clang-format for `make check-format`, docker-compose to
# validate docker-compose.yml, python3 for the test driver, aiosmtpd as the
# real SMTP server the notifier's e-mail tests deliver to, python3-yaml to
# check the Kubernetes manifests (deploy/k8s) in `make compose-check`.
TOOL_PKGS=(curl clang clang-format docker-compose python3 procps python3-aiosmtpd python3-yaml)
# Test-only: headless Chromium drives the pages the services serve (the
# walk-planner's phone page, offline and back; the reporting page) over the
# DevTools protocol (tests/integration/cdp.py). Never needed to build or run Trygg.
TEST_PKGS=(chromium)

ALL=("${BUILD_PKGS[@]}" "${PG_PKGS[@]}" "${TOOL_PKGS[@]}" "${TEST_PKGS[@]}")
# What `make compose-test` adds: the Docker engine and debootstrap (for the
# Debian base image where no registry is reachable). Not started here:
# tests/compose/run.py starts its own dockerd when none runs.
COMPOSE_PKGS=(docker.io docker-compose debootstrap openssl curl python3)

case "${1:-}" in
  # What `make` needs and checks for (deploy/Dockerfile's build stage),
  # without the developer tools.
  --runtime-only) ALL=("${BUILD_PKGS[@]}" "${PG_PKGS[@]}" curl python3) ;;
  --compose) ALL=("${COMPOSE_PKGS[@]}") ;;
esac

missing=()
for p in "${ALL[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Do not let the postgresql package start its own cluster on port 5432;
# we run our own clusters under the working tree.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
