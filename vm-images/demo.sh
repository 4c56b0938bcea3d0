#!/usr/bin/env bash
# The main job: a Linux 6.12 guest in QEMU 10 plays a test signal through vsnd-host
# (-device vhost-user-snd-pci). vsnd-host plays it into ALSA when this machine has a sound card,
# into build/demo/stream-0.wav otherwise; in that case the WAV is checked sample-exact against
# what the guest played and the guest's timing log is summarised.
#   VSND_DEMO_SECONDS (default 3), VSND_DEMO_BACKEND (alsa|wav, default: alsa if /dev/snd has a
#   playback PCM), VSND_DEMO_DEVICE (ALSA device, default "default")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tests/setup.sh" default

build=$root/build/default
demo=$root/build/demo
seconds=${VSND_DEMO_SECONDS:-3}
backend=${VSND_DEMO_BACKEND:-}
if [ -z "$backend" ]; then
    if ls /dev/snd/pcmC*D*p >/dev/null 2>&1; then backend=alsa; else backend=wav; fi
fi
rm -rf "$demo" && mkdir -p "$demo/share"
sock=$demo/vsnd.sock
host_args=(--socket "$sock" --backend "$backend")
if [ "$backend" = wav ]; then
    host_args+=(--wav-dir "$demo")
else
    host_args+=(--device "${VSND_DEMO_DEVICE:-default}")
fi

echo "== vsnd-host ${host_args[*]}"
"$root/vm-images/run-vm" --guest-bin "$build/guest" --share "$demo/share" --sound "vhost-user:$sock" \
    --backend-cmd "$build/host/vhost_user/vsnd-host ${host_args[*]}" --backend-log "$demo/vsnd-host.log" \
    --timeout $((seconds + 90)) -- \
    "head -1 /proc/asound/cards; vsnd-guest-agent play --signal sine --seconds $seconds --period 1024 --periods 4 \
     --out-wav /mnt/share/played.wav --log /mnt/share/log.csv"

# The delay the guest's ALSA reported after each period write (written - played, in ms).
awk -F, '$1=="period" { n++; d=$4/48.0; if (n==1||d<min) min=d; if (n==1||d>max) max=d }
         $1=="drain_return" { frames=$3 }
         END { printf "guest: %d periods, %d frames written; snd_pcm_delay %.1f .. %.1f ms\n", n, frames, min, max }' \
    "$demo/share/log.csv"
if [ "$backend" = wav ]; then
    echo "host:  $("$build/host/vsnd-wav-tool" compare "$demo/share/played.wav" "$demo/stream-0.wav") ($demo/stream-0.wav)"
fi
