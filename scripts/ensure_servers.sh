#!/usr/bin/env bash
# Make sure the server binaries the tests start are installed.
#
# The tests start real servers on free loopback ports (tests/conftest.py); a test that needs
# one fails loudly when it is missing, it never skips. This script installs what is missing
# when it runs as root (Debian/Ubuntu, apt-get), and otherwise prints exactly what to install
# and exits 1.
#
#   redis-server, redis-cli   Debian package redis-server   (redis_lsh tests, 3-master cluster)
set -euo pipefail

missing_pkgs=()
missing_bins=()
for bin in redis-server redis-cli; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        missing_bins+=("$bin")
    fi
done
if ((${#missing_bins[@]})); then
    missing_pkgs+=(redis-server)
fi

if ((${#missing_pkgs[@]} == 0)); then
    echo "ensure_servers: all server binaries present (redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'))"
    exit 0
fi

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_servers: installing ${missing_pkgs[*]} (missing: ${missing_bins[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing_pkgs[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${missing_pkgs[@]}"
    fi
    # the package may start a system instance on 6379; the tests never use it
    for bin in "${missing_bins[@]}"; do
        command -v "$bin" >/dev/null 2>&1 || { echo "ensure_servers: $bin still missing" >&2; exit 1; }
    done
    exit 0
fi

cat >&2 <<MSG
ensure_servers: missing ${missing_bins[*]}.
Install, as root:
    apt-get install -y --no-install-recommends ${missing_pkgs[*]}
(or on macOS: brew install redis). Then run the tests again.
MSG
exit 1
