#!/usr/bin/env bash
# Build mcdb and run every test, then again under ASan+UBSan:
#   ./test.sh                 all tests, normal and sanitizer builds
#   ./test.sh --no-sanitize   skip the sanitizer build
#   ./test.sh -R log/         only tests whose name matches (passed to ctest)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
need_packages "${MCDB_BUILD_PACKAGES[@]}" "${MCDB_TEST_PACKAGES[@]}"

sanitize=1
ctest_args=()
for a in "$@"; do
    case "$a" in
    --no-sanitize) sanitize=0 ;;
    -h | --help) sed -n '2,5p' "$0"; exit 0 ;;
    *) ctest_args+=("$a") ;;
    esac
done
jobs=$(nproc)

run_suite() { # build-dir, cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${ctest_args[@]}"
}

echo "== build and test (RelWithDebInfo, -Werror) =="
run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "$sanitize" = 1 ]; then
    echo "== build and test (ASan+UBSan) =="
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DMCDB_SANITIZE=address,undefined
fi
