# Sourced by ./run.sh and ./test.sh: install missing Debian packages, and
# the test's node packages.
# need_packages PKG...: installs what is missing with apt-get when run as
# root; otherwise prints the exact apt-get line and exits 1.
need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "mcdb needs these Debian packages; install them with:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq "${missing[@]}" >&2
}

MCDB_BUILD_PACKAGES=(cmake pkg-config gcc make liburing-dev libxxhash-dev libsodium-dev
                     libsystemd-dev
                     help2man              # man pages from --help (docs/man)
                     libjansson-dev libmemcached-dev)  # mcdb-sync
MCDB_TEST_PACKAGES=(libcriterion-dev libmemcached-dev libmemcached-tools
                    python3-pymemcache memcached redis-server rsync
                    nutcracker             # tests/cluster: twemproxy in front of three primaries
                    clang libclang-rt-dev  # the fuzz smoke: clang, libFuzzer
                    clang-format           # scripts/format-check
                    sqlite3                # tests/tools/test_sync
                    man-db                 # tests/docs: man -l renders each page
                    sasl2-bin)             # tests/net/memjs: saslpasswd2 for memcached -S

# need_npm DIR: install DIR's node packages exactly as its package-lock.json
# pins them (npm ci) when DIR/node_modules is missing or older than the lock.
# Without npm it says loudly that the tests needing them will be skipped.
need_npm() {
    local dir=$1
    if ! command -v npm >/dev/null; then
        echo "== npm is missing: the tests that use $dir's node packages" \
             "(tests/net/test_memjs: memjs) will be SKIPPED ==" >&2
        return 0
    fi
    # npm ci writes node_modules/.package-lock.json last
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        return 0
    fi
    echo "installing $dir's node packages (npm ci)" >&2
    npm ci --prefix "$dir" --no-audit --no-fund >&2
}
