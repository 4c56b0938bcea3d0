#!/usr/bin/env bash
# The main job (for now): installs what is missing, builds, and runs the in-process demo: the
# guest driver model plays a test signal through real virtqueues into the device model's WAV
# backend in real time, checks the WAV bit-exact and reports frames, periods and clock error.
# Arguments go to vsnd-loopback-demo (--help lists them).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tests/setup.sh" default
exec "$here/build/default/host/vsnd-loopback-demo" --out "$here/build/demo" "$@"
