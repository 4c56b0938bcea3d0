#!/usr/bin/env bash
# Installs what vsnd needs from Debian bookworm (+ bookworm-backports) and builds it.
# Idempotent: a second run installs nothing and only rebuilds what changed.
#   usage: tests/setup.sh [preset]      (default preset: "default"; also "asan", "tsan", "fuzz")
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-default}

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# bookworm-backports carries QEMU 10 (vhost-user-snd-pci) and the 6.12 kernel (virtio_snd).
# Its mirror is taken from the machine's own bookworm entry, so no archive host is named here.
add_backports() {
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' \
              /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { echo "setup: cannot find the bookworm apt source to derive backports from" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" | sudo_ tee /etc/apt/sources.list.d/vsnd-backports.sources >/dev/null
    sudo_ apt-get update -qq
}

# python3: vm-images/run-vm and the VM tests; kmod: depmod for the guest image (a minimal root
# such as the debian:bookworm image has neither). libzita-resampler-dev: the RTP receiver's
# drift resampler. GStreamer (base + good: rtpL16pay/rtpL24pay, udpsink) and ffmpeg: the real
# RTP senders of the interop tests.
pkgs=(build-essential cmake ninja-build pkg-config clang-14 libclang-rt-14-dev
      libboost-dev libasound2-dev libsndfile1-dev libcli11-dev libspdlog-dev libfmt-dev
      nlohmann-json3-dev libzita-resampler-dev libgtest-dev libgmock-dev libbenchmark-dev
      gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good ffmpeg
      linux-libc-dev alsa-utils cpio busybox-static xz-utils zstd iproute2 nftables
      python3 kmod binutils)
bpo_pkgs=(qemu-system-x86)

missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_ apt-get update -qq
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
add_backports
if ! qemu-system-x86_64 -device help 2>/dev/null | grep -q vhost-user-snd-pci; then
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "${bpo_pkgs[@]}"
fi
# PipeWire 1.4 (module-rtp-sink: a real RTP sender for the receiver's interop test).
if ! dpkg-query -W -f='${Version}' pipewire-bin 2>/dev/null | grep -q '^1\.'; then
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports pipewire-bin libpipewire-0.3-modules
fi

cd "$here"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
