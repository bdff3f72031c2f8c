#!/usr/bin/env bash
# Check the formatting, build mcdb and run every test, then again under ASan+UBSan:
#   ./test.sh                 all tests, normal and sanitizer builds
#   ./test.sh --no-sanitize   skip the sanitizer build
#   ./test.sh -R log/         only tests whose name matches (passed to ctest)
#   ./test.sh --no-fuzz       skip the fuzz smoke (clang, libFuzzer; fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
need_packages "${MCDB_BUILD_PACKAGES[@]}" "${MCDB_TEST_PACKAGES[@]}"
need_npm tests/js  # memjs, for tests/net/test_memjs

sanitize=1
fuzz=1
ctest_args=()
for a in "$@"; do
    case "$a" in
    --no-sanitize) sanitize=0 ;;
    --no-fuzz) fuzz=0 ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
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

echo "== format (scripts/format-check: .clang-format on every C file) =="
scripts/format-check
echo "== build and test (RelWithDebInfo, -Werror) =="
run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "$sanitize" = 1 ]; then
    echo "== build and test (ASan+UBSan) =="
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DMCDB_SANITIZE=address,undefined
fi
if [ "$fuzz" = 1 ]; then
    # Each libFuzzer target over its seeds and regressions, then a fixed
    # number of inputs more (fuzz/CMakeLists.txt); fuzz/run builds build-fuzz.
    echo "== fuzz smoke (clang libFuzzer, ASan+UBSan) =="
    if fuzz/run --check; then
        fuzz/run --build-only
        ctest --test-dir build-fuzz --output-on-failure -j"$jobs" "${ctest_args[@]}"
    else
        echo "== fuzz smoke SKIPPED: clang's libFuzzer is not available (above) ==" >&2
    fi
fi
