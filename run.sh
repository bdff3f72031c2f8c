#!/usr/bin/env bash
# Build mcdbd and run it on 127.0.0.1:11211 with its data in ./data:
#   ./run.sh [mcdbd options...]      (./run.sh --help lists them)
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
need_packages "${MCDB_BUILD_PACKAGES[@]}"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DMCDB_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
exec build-release/mcdbd --data-dir ./data "$@"
