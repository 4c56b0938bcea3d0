#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus/: whole sessions the device fuzzers would take
long to find by themselves (SET_PARAMS, PREPARE, START, I/O, STOP, RELEASE; info queries; event and
rx buffers), in the message format of tests/fuzz/message_feeder.hpp. The rest of each corpus is
what the fuzzers found (libFuzzer -merge=1). Run from anywhere: make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def msg(queue, readable, writable_scale=None):
    """One message with a single readable part of exactly len(readable) bytes (1 + scale % 64)."""
    scale = len(readable) - 1
    assert 0 <= scale < 64
    # writable part: 4 + scale * 8 bytes; at least the 4-byte status (and 8 for tx/rx)
    return bytes([queue, 1, 0, scale]) + readable


def control(code, *fields):
    return msg(0, struct.pack("<I" + "I" * len(fields), code, *fields))


def set_params(stream, buffer_bytes=19200, period_bytes=1920, channels=2, fmt=5, rate=7):
    return msg(0, struct.pack("<IIIIIBBBx", 0x101, stream, buffer_bytes, period_bytes, 0, channels, fmt, rate))


def tx(stream, frames=15):
    return msg(2, struct.pack("<I", stream) + bytes(range(4 * frames)))


def rx(stream):
    return bytes([3, 1, 2, 3]) + struct.pack("<I", stream)


def event():
    return bytes([1, 0, 0, 0])


PCM_INFO, JACK_INFO, CHMAP_INFO = 0x100, 0x1, 0x200
PREPARE, RELEASE, START, STOP = 0x102, 0x103, 0x104, 0x105

sessions = {
    "playback": [set_params(0), control(PREPARE, 0), tx(0), tx(0), control(START, 0)] + [tx(0)] * 6
                + [control(STOP, 0), control(RELEASE, 0)],
    "capture": [set_params(1), control(PREPARE, 1), rx(1), rx(1), control(START, 1), rx(1), rx(1),
                control(STOP, 1), control(RELEASE, 1)],
    "info": [control(PCM_INFO, 0, 2, 32), control(JACK_INFO, 0, 1, 24), control(CHMAP_INFO, 0, 2, 24),
             event(), event()],
    "restart": [set_params(0), control(PREPARE, 0), control(START, 0), tx(0), control(STOP, 0),
                control(START, 0), tx(0), control(STOP, 0), control(PREPARE, 0), control(RELEASE, 0),
                set_params(0, channels=1), control(PREPARE, 0), tx(0)],
}
# device_failing_backend: 7 bytes of faults first (open mode, looks, fail after writes, room,
# ratio, xrun every, position), then the same sessions.
faults = {
    "ok": bytes(7), "refused": bytes([1, 0, 0, 0, 0, 0, 0]), "slow": bytes([2, 5, 0, 0, 0, 0, 0]),
    "failing-open": bytes([3, 3, 0, 0, 0, 0, 0]), "never-opens": bytes([4, 0, 0, 0, 0, 0, 0]),
    "fails-mid-stream": bytes([0, 0, 3, 0, 0, 0, 0]), "no-room": bytes([0, 0, 0, 1, 0, 0, 0]),
    "nan-ratio": bytes([0, 0, 0, 0, 6, 2, 1]),
}
for target, prefixes in (("fuzz-device_messages", {"": b""}), ("fuzz-device_failing_backend", faults)):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for pname, prefix in prefixes.items():
        for sname, parts in sessions.items():
            name = f"seed-{pname + '-' if pname else ''}{sname}"
            with open(os.path.join(out, name), "wb") as f:
                f.write(prefix + b"".join(parts))
