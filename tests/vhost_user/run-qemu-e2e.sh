#!/bin/bash
# End-to-end proof with real QEMU 10 (vhost-user-snd-pci) and a Linux 6.12 guest:
#   1. the card appears; 2 s played in the guest land bit-exact in vsnd-host's WAV (nothing lost at stop)
#   2. arecord and the guest agent record bit-exact from --capture-wav
#   3. QEMU killed (SIGKILL) mid-stream; the same vsnd-host serves a new QEMU, which plays bit-exact
# Usage: tests/vhost_user/run-qemu-e2e.sh [path/to/vsnd-host]   (from the source tree root)
# Not a ctest: it boots three VMs (~35 s on 2 cores, TCG).
set -euo pipefail
HOST_BIN=${1:-build/vhu/host/vhost_user/vsnd-host}
RUN_VM=vm-images/run-vm
WORK=$(mktemp -d /tmp/vsnd-e2e.XXXXXX)
SOCK=$WORK/vsnd.sock
DAEMON_PID=
cleanup() { [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

compare() { # compare.py MODE A B: exact | prefix
python3 - "$@" <<'EOF'
import sys, wave
mode, a, b = sys.argv[1:4]
wa, wb = wave.open(a), wave.open(b)
fa = (wa.getnchannels(), wa.getsampwidth(), wa.getframerate())
da, db = wa.readframes(wa.getnframes()), wb.readframes(wb.getnframes())
fb = fa[0] * fa[1]
ok = fa == (wb.getnchannels(), wb.getsampwidth(), wb.getframerate()) and (da == db if mode == "exact" else db.startswith(da) or da.startswith(db))
print(f"  {a}: {len(da)//fb} frames, {b}: {len(db)//fb} frames -> {'bit-exact' if ok else 'DIFFERENT'} ({mode})")
sys.exit(0 if ok else 1)
EOF
}

# A 3 s capture source whose every sample differs (frame counters on both channels).
python3 - "$WORK/capture.wav" <<'EOF'
import sys, wave, struct
w = wave.open(sys.argv[1], 'wb'); w.setnchannels(2); w.setsampwidth(2); w.setframerate(48000)
w.writeframes(b''.join(struct.pack('<hh', (n * 7) % 65536 - 32768, (n * 13 + 4096) % 65536 - 32768) for n in range(144000)))
EOF

echo "== 1. card + 2 s playback (run-vm starts vsnd-host)"
mkdir -p "$WORK/share1"
t0=$(date +%s.%N)
$RUN_VM --sound "vhost-user:$SOCK" --share "$WORK/share1" --backend-log "$WORK/host1.log" \
  --backend-cmd "$HOST_BIN --socket $SOCK --backend wav --wav-dir $WORK/out1" \
  -- sh -c 'cat /proc/asound/cards; vsnd-guest-agent play --seconds 2 --out-wav /mnt/share/ref.wav --log /mnt/share/log.csv'
echo "  wall $(echo "$(date +%s.%N) - $t0" | bc) s"
compare exact "$WORK/out1/stream-0.wav" "$WORK/share1/ref.wav"

echo "== 2. capture: arecord and the agent against --capture-wav"
mkdir -p "$WORK/share2"
$RUN_VM --sound "vhost-user:$SOCK" --share "$WORK/share2" --backend-log "$WORK/host2.log" \
  --backend-cmd "$HOST_BIN --socket $SOCK --backend wav --wav-dir $WORK/out2 --capture-wav $WORK/capture.wav" \
  -- sh -c 'arecord -D hw:0,0 -f S16_LE -r 48000 -c 2 -d 1 /mnt/share/arecord.wav && vsnd-guest-agent record --seconds 1 --out-wav /mnt/share/agent.wav'
compare prefix "$WORK/share2/arecord.wav" "$WORK/capture.wav"
compare prefix "$WORK/share2/agent.wav" "$WORK/capture.wav"

echo "== 3. QEMU killed mid-stream, then a new QEMU on the same vsnd-host"
$HOST_BIN --socket "$SOCK" --backend wav --wav-dir "$WORK/out3" > "$WORK/host3.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/host3.log" && break; sleep 0.05; done
mkdir -p "$WORK/share3"
$RUN_VM --sound "vhost-user:$SOCK" --share "$WORK/share3" -- vsnd-guest-agent play --seconds 10 > "$WORK/vm3a.log" 2>&1 &
VM=$!
for _ in $(seq 600); do grep -q "device started" "$WORK/host3.log" && break; sleep 0.1; done
sleep 3
QEMU=$(pgrep -f "qemu-system-x86_64.*$SOCK" | head -1)
echo "  killing QEMU $QEMU (SIGKILL) during playback"
kill -9 "$QEMU"
wait $VM || true
for _ in $(seq 50); do grep -q "connection 1: closed" "$WORK/host3.log" && break; sleep 0.1; done
kill -0 "$DAEMON_PID" && echo "  vsnd-host still running"
mv "$WORK/out3/stream-0.wav" "$WORK/out3/killed.wav"
t0=$(date +%s.%N)
$RUN_VM --sound "vhost-user:$SOCK" --share "$WORK/share3" \
  -- sh -c 'cat /proc/asound/cards; vsnd-guest-agent play --seconds 2 --out-wav /mnt/share/ref.wav'
echo "  wall $(echo "$(date +%s.%N) - $t0" | bc) s"
compare exact "$WORK/out3/stream-0.wav" "$WORK/share3/ref.wav"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" && echo "  vsnd-host exited 0 on SIGTERM"
DAEMON_PID=
[ ! -e "$SOCK" ] && echo "  socket file removed"
grep -E "connection|stopped after" "$WORK/host3.log" | sed 's/^/  host: /'
echo "all passed; files in $WORK"
