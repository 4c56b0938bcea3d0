#!/usr/bin/env bash
# Line and region coverage of each libFuzzer target over its corpus (llvm-cov, clang-14): builds
# the fuzz targets with source-based coverage in build/fuzz-cov, replays the seed corpus in
# tests/fuzz/corpus/<target> plus what build/fuzz/corpus/<target> has gathered, and prints, per
# target, the coverage of the sources it exists to test.
#   tests/fuzz/coverage.sh [target...]     (default: every target)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
tests/setup.sh fuzz >/dev/null # the packages, and build/fuzz (where run-all.sh gathers corpora)
if ! command -v llvm-cov-14 >/dev/null || ! command -v llvm-profdata-14 >/dev/null; then
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm-14 >/dev/null
fi
cmake --preset fuzz -B build/fuzz-cov -DVSND_FUZZ_COVERAGE=ON >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire descriptor_chain device_messages device_failing_backend driver_responses vhost_user_message)
# The sources each target is there for.
declare -A focus=(
    [wire]="driver/wire/src"
    [descriptor_chain]="driver/virtq/src"
    [device_messages]="host/device/src driver/virtq/src"
    [device_failing_backend]="host/device/src"
    [driver_responses]="driver/model/src driver/virtq/src/driver_queue.cpp"
    [vhost_user_message]="host/vhost_user/protocol/src"
)
for t in "${targets[@]}"; do
    cmake --build build/fuzz-cov --target "fuzz-$t" >/dev/null
    bin=$(find build/fuzz-cov/tests -name "fuzz-$t" -type f | head -1)
    prof=build/fuzz-cov/$t.profraw
    dirs=()
    for d in tests/fuzz/corpus/fuzz-$t build/fuzz/corpus/fuzz-$t; do [ -d "$d" ] && dirs+=("$d"); done
    inputs=$(find "${dirs[@]}" -type f 2>/dev/null | wc -l)
    LLVM_PROFILE_FILE=$prof "$bin" -runs=0 "${dirs[@]}" >/dev/null 2>&1
    llvm-profdata-14 merge -sparse "$prof" -o "build/fuzz-cov/$t.profdata"
    paths=()
    for f in ${focus[$t]}; do paths+=("$here/$f"); done
    echo "== fuzz-$t: $inputs inputs"
    llvm-cov-14 report "$bin" -instr-profile="build/fuzz-cov/$t.profdata" "${paths[@]}" | sed "s|$here/||" | tail -n +1
done
