#!/bin/sh
# Host-only check of the host-clock path (no VM): vsnd-host-clock publishes into a file and
# vsnd-guest-agent clock-check reads it exactly as the guest reads the ivshmem BAR.
#   host-clock-selftest.sh PUBLISHER AGENT
set -eu
publisher=$1 agent=$2
page=$(mktemp /dev/shm/vsnd-hc-selftest.XXXXXX)
"$publisher" "$page" --period-us 200 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$page"' EXIT
# wait until the page is live (4096 bytes, magic "VHCK" at offset 4)
i=0
until [ "$(stat -c %s "$page")" -ge 4096 ] && [ "$(dd if="$page" bs=1 skip=4 count=4 2>/dev/null)" = VHCK ]; do
    i=$((i + 1)); [ $i -lt 500 ] || { echo "publisher did not start" >&2; exit 1; }
    sleep 0.01
done
out=$("$agent" clock-check --host-clock "$page" --seconds 1 --interval-ms 20)
echo "$out"
# Same clock on both sides: the fitted rate must be ~0 and the offset ~0.
echo "$out" | grep -q "edge pairs vs the fitted line"
echo "$out" | awk '/rate host\/guest/ { split($0, a, "offset "); off = a[2] + 0; if (off < -1 || off > 1) exit 1 }'
