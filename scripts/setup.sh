#!/bin/sh
# Installs kmsrun's build and test dependencies (Debian 12, as root) and builds
# kmsrun twice: build/ (release) and build-asan/ (AddressSanitizer + UBSan).
set -eu
cd "$(dirname "$0")/.."

packages="build-essential cmake pkg-config
  liblua5.4-dev lua-cjson-dev libcurl4-openssl-dev libssl-dev libevent-dev libarchive-dev libcmocka-dev
  curl jq bc strace python3 python3-junitparser python3-jsonschema procps"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
if [ "${KMSRUN_SKIP_ASAN:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKMSRUN_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs"
fi
