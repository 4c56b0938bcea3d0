#!/usr/bin/env python3
"""VM regression tests: a Linux 6.12 guest in QEMU 10 plays and records through vsnd-host.

Each case boots the test guest (vm-images/run-vm) against `vhost-user-snd-pci` backed by
vsnd-host with the WAV backend, runs vsnd-guest-agent or aplay/arecord inside, and checks on the
host what was really played or recorded, sample by sample (vsnd-wav-tool compare).

    regression.py CASE --build-dir build/default      (CASE: see CASES below; "all" runs each)
"""
import argparse
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_VM = os.path.join(ROOT, "vm-images", "run-vm")


class Failure(Exception):
    pass


class Env:
    def __init__(self, build_dir, work):
        self.build = os.path.abspath(build_dir)
        # VSND_VM_HOST: another vsnd-host (the ASan+UBSan build's) serves the guests.
        self.host = os.environ.get("VSND_VM_HOST") or os.path.join(self.build, "host", "vhost_user", "vsnd-host")
        self.wav_tool = os.path.join(self.build, "host", "vsnd-wav-tool")
        self.guest_bin = os.path.join(self.build, "guest")
        self.work = work
        self.share = os.path.join(work, "share")
        self.out = os.path.join(work, "out")
        self.sock = os.path.join(work, "vsnd.sock")
        os.makedirs(self.share, exist_ok=True)
        os.makedirs(self.out, exist_ok=True)
        for tool in (self.host, self.wav_tool, os.path.join(self.guest_bin, "vsnd-guest-agent")):
            if not os.access(tool, os.X_OK):
                raise Failure(f"missing {tool}: build the default preset first")

    def host_cmd(self, *extra):
        args = [self.host, "--socket", self.sock, "--backend", "wav", "--wav-dir", self.out, *extra]
        return " ".join(args)

    def vm_cmd(self, guest_cmd, host_args=(), timeout=120, backend=True):
        """run-vm's command line: the guest against vsnd-host (started and stopped by run-vm
        with backend=True, else the one listening on the socket), running guest_cmd."""
        cmd = [RUN_VM, "-q", "--guest-bin", self.guest_bin, "--share", self.share,
               "--sound", f"vhost-user:{self.sock}", "--timeout", str(timeout)]
        if backend:
            cmd += ["--backend-cmd", self.host_cmd(*host_args),
                    "--backend-log", os.path.join(self.work, "vsnd-host.log")]
        return cmd + ["--", guest_cmd]

    def run_vm(self, guest_cmd, host_args=(), timeout=120, backend=True, check=True):
        """Boots the guest (vm_cmd) and runs guest_cmd to its end."""
        cmd = self.vm_cmd(guest_cmd, host_args, timeout, backend)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate()
        except BaseException:  # interrupted (see main): run-vm cleans up its QEMU and vsnd-host on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        p = subprocess.CompletedProcess(cmd, proc.returncode, out)
        if check and p.returncode != 0:
            raise Failure(f"guest command failed ({p.returncode}): {guest_cmd}\n{p.stdout[-3000:]}")
        return p

    def compare(self, a, b, prefix=False):
        args = [self.wav_tool, "compare", a, b] + (["--prefix"] if prefix else [])
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise Failure(f"{os.path.basename(a)} vs {os.path.basename(b)}: {p.stdout.strip()}")
        return p.stdout.strip()


def agent_play(args, out_wav, mode="play"):
    return f"vsnd-guest-agent {mode} --signal test {args} --out-wav {out_wav}"


def qemu_child(pid):
    """The QEMU process run-vm (pid) started, or None while there is none."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        for k in kids:
            with open(f"/proc/{k}/comm") as f:
                if f.read().startswith("qemu"):
                    return int(k)
    except OSError:
        pass
    return None


# ---- cases ---------------------------------------------------------------------------------------

def case_topology(env):
    """The guest sees the configured card: 2 playback and 1 capture substreams, formats, rates."""
    p = env.run_vm("cat /proc/asound/cards; cat /proc/asound/card0/pcm0p/info; cat /proc/asound/card0/pcm0c/info",
                   host_args=("--streams", "out:2,in:1"))
    text = p.stdout
    for needle in ("virtio-snd", "stream: PLAYBACK", "subdevices_count: 2", "stream: CAPTURE", "subdevices_count: 1"):
        if needle not in text:
            raise Failure(f"'{needle}' not in the guest's /proc/asound:\n{text}")
    print("card: " + text.splitlines()[0].strip())


def case_playback(env):
    """aplay and the agent play a known signal; the host WAV holds exactly it, nothing lost at stop."""
    env.run_vm(agent_play("--seconds 2 --log /mnt/share/log.csv", "/mnt/share/ref.wav"))
    print("agent: " + env.compare(os.path.join(env.share, "ref.wav"), os.path.join(env.out, "stream-0.wav")))
    # aplay of a WAV file (it pads its last chunk with silence: the host WAV starts with the file).
    src = os.path.join(env.share, "signal.wav")
    subprocess.run([env.wav_tool, "gen", src, "--format", "S16", "--rate", "44100", "--frames", "44100"], check=True)
    shutil.rmtree(env.out)
    os.makedirs(env.out)
    env.run_vm("aplay -q -D hw:0,0 /mnt/share/signal.wav")
    print("aplay: " + env.compare(os.path.join(env.out, "stream-0.wav"), src, prefix=True))


def case_capture(env):
    """arecord and the agent record a host WAV; the guest's recording is exactly its start."""
    src = os.path.join(env.work, "capture.wav")
    subprocess.run([env.wav_tool, "gen", src, "--format", "S16", "--frames", str(48000 * 3)], check=True)
    env.run_vm("vsnd-guest-agent record --frames 48000 --out-wav /mnt/share/rec.wav && "
               "arecord -q -D hw:0,0 -f S16_LE -r 48000 -c 2 -s 24000 /mnt/share/arecord.wav",
               host_args=("--capture-wav", src))
    print("agent: " + env.compare(src, os.path.join(env.share, "rec.wav"), prefix=True))
    print("arecord: " + env.compare(src, os.path.join(env.share, "arecord.wav"), prefix=True))


def case_pause(env):
    """A pause/resume (messages in flight), a forced underrun (recovered by prepare, refill and
    start) and a drain + start again lose nothing and add nothing."""
    env.run_vm(agent_play("--seconds 2 --pause-at 24000 --pause-ms 300 --underrun-at 48000 --restart-at 72000 "
                          "--gap-ms 200", "/mnt/share/ref.wav", mode="pause"))
    print("pause: " + env.compare(os.path.join(env.share, "ref.wav"), os.path.join(env.out, "stream-0.wav")))


def case_cycles(env):
    """100 open/prepare/start/stop/close cycles, then a clean bit-exact playback in the same boot."""
    t = time.monotonic()
    env.run_vm("vsnd-guest-agent cycles 100 --period 480 --periods 4 && " + agent_play(
        "--seconds 1 --period 480 --periods 4", "/mnt/share/ref.wav"))
    # The cycles left partial audio in the WAV first; the last run's frames end it exactly.
    print(f"cycles: 100 done in {time.monotonic() - t:.1f} s")
    ref = os.path.join(env.share, "ref.wav")
    tail = os.path.join(env.work, "tail.wav")
    with wave.open(ref) as w:
        frames = w.getnframes()
    # Cut the host WAV's last `frames` frames and compare them with the reference.
    with open(os.path.join(env.out, "stream-0.wav"), "rb") as f:
        data = f.read()
    cut_wav(data, frames, tail)
    print("after cycles: " + env.compare(ref, tail))


def cut_wav(data, frames, out_path):
    """Writes the last `frames` frames of a PCM WAV (as bytes) to out_path."""
    w = wave.open(io.BytesIO(data))
    n = w.getnframes()
    w.setpos(n - frames)
    pcm = w.readframes(frames)
    with wave.open(out_path, "wb") as o:
        o.setnchannels(w.getnchannels())
        o.setsampwidth(w.getsampwidth())
        o.setframerate(w.getframerate())
        o.writeframes(pcm)


SWEEP = ([("S16_LE", r, 2) for r in (8000, 11025, 16000, 22050, 32000, 44100, 64000, 88200, 96000, 176400, 192000)]
         + [(f, 48000, c) for f in ("S16_LE", "S24_LE", "S32_LE", "FLOAT_LE") for c in (1, 2, 6, 8)])


def case_sweep(env):
    """Every rate 8–192 kHz (S16 stereo) and every format × 1, 2, 6, 8 channels (48 kHz), bit-exact."""
    lines = []
    for i, (fmt, rate, ch) in enumerate(SWEEP):
        period = max(rate // 100, 64)
        lines.append(agent_play(f"--format {fmt} --rate {rate} --channels {ch} --period {period} --periods 4 "
                                f"--seconds 0.2", f"/mnt/share/ref-{i}.wav"))
    env.run_vm(" && ".join(lines), timeout=300)
    # The WAV backend starts a new file per format and keeps the old ones: stream-0.1.wav, .2, ...
    for i in range(len(SWEEP)):
        host = os.path.join(env.out, "stream-0.wav" if i == len(SWEEP) - 1 else f"stream-0.{i + 1}.wav")
        try:
            env.compare(os.path.join(env.share, f"ref-{i}.wav"), host)
        except Failure as e:
            raise Failure(f"{SWEEP[i]}: {e}")
    print(f"sweep: {len(SWEEP)} formats/rates/channel counts bit-exact")


@contextlib.contextmanager
def serving(env):
    """vsnd-host started by the case itself (so it outlives the guests), logging into the work
    dir; stopped with SIGTERM at the end."""
    log = open(os.path.join(env.work, "vsnd-host.log"), "w")
    host = subprocess.Popen(env.host_cmd().split(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(100):
            if os.path.exists(env.sock):
                break
            time.sleep(0.05)
        yield host
    finally:
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(5)
        except subprocess.TimeoutExpired:
            host.kill()
        log.close()


def case_reconnect(env):
    """QEMU killed (SIGKILL) mid-stream: vsnd-host keeps running, what the killed guest played is
    an exact prefix of its signal, and a new QEMU plays through the same vsnd-host bit-exact."""
    with serving(env) as host:
        # Killed once the host WAV holds half a second of a 20 s playback, however long the boot
        # took (what it played must stay within the 2 s reference below).
        cmd = env.vm_cmd(agent_play("--seconds 20", "/mnt/share/killed.wav"), backend=False)
        wav = os.path.join(env.out, "stream-0.wav")
        vm = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        killed = False
        try:
            while vm.poll() is None and not killed:
                if os.path.exists(wav) and os.path.getsize(wav) > 44 + 24000 * 4:
                    qemu = qemu_child(vm.pid)
                    if qemu is not None:
                        os.kill(qemu, signal.SIGKILL)
                        killed = True
                time.sleep(0.02)
            try:
                out, _ = vm.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                raise Failure("run-vm did not end within 60 s of its QEMU being killed")
        finally:
            if vm.poll() is None:
                vm.kill()
        if not killed:
            raise Failure(f"the first guest ended ({vm.returncode}) before it was half a second into its "
                          f"stream\n{out[-3000:]}")
        if host.poll() is not None:
            raise Failure("vsnd-host ended when QEMU was killed")
        time.sleep(0.3)  # the WAV file thread closes the file after the stream went
        os.rename(wav, os.path.join(env.work, "killed.wav"))
        # The same signal, whole: the killed guest never wrote its own reference.
        ref = os.path.join(env.share, "ref.wav")
        env.run_vm(agent_play("--seconds 2", "/mnt/share/ref.wav"), backend=False)
        print("after reconnect: " + env.compare(ref, wav))
        print("killed mid-stream: " + env.compare(ref, os.path.join(env.work, "killed.wav"), prefix=True))
        if host.poll() is not None:
            raise Failure("vsnd-host ended")


def case_kills(env):
    """QEMU killed (SIGKILL) at random points of a session, VSND_QEMU_KILLS times (default 50), a
    quarter each aimed at the handshake, at PREPARE, mid-stream and at the drain (timed from that
    session's QEMU start or its stream's PREPARE). vsnd-host stays up throughout, what each killed
    guest had played is an exact prefix of the signal, and a guest after the last kill plays
    bit-exact."""
    import random
    kills = int(os.environ.get("VSND_QEMU_KILLS", "50"))
    rng = random.Random(int(os.environ.get("VSND_QEMU_KILLS_SEED", "1")))
    phases = {}
    delivered = 0
    with serving(env) as host:
        # The reference: one whole session (its guest writes what it sent).
        ref = os.path.join(env.share, "ref.wav")
        whole = os.path.join(env.out, "stream-0.wav")
        env.run_vm(agent_play("--seconds 2", "/mnt/share/ref.wav"), backend=False)
        os.rename(whole, os.path.join(env.work, "whole.wav"))
        # Where each kill aims: (anchor, earliest, latest) in s after the anchor, which is QEMU's
        # process appearing or the stream's PREPARE in this very session (the host WAV appears).
        aims = [("start", 0.02, 0.5),          # the vhost-user handshake
                ("prepare", 0.0, 0.1),         # PREPARE and START
                ("prepare", 0.3, 1.8),         # mid-stream
                ("prepare", 1.9, 2.4)]         # the drain (2 s of audio)
        for i in range(kills):
            anchor, lo, hi = aims[i % 4]
            at = rng.uniform(lo, hi)
            cmd = env.vm_cmd(agent_play("--seconds 2", "/mnt/share/killed.wav"), timeout=60, backend=False)
            vm = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            qemu = None
            anchored = None
            while vm.poll() is None and (anchored is None or time.monotonic() - anchored < at):
                if anchored is None and anchor == "prepare" and os.path.exists(whole):
                    anchored = time.monotonic()
                if qemu is None:
                    qemu = qemu_child(vm.pid)
                    if qemu is not None and anchor == "start":
                        anchored = time.monotonic()
                time.sleep(0.005)
            if qemu is not None and vm.poll() is None:
                try:
                    os.kill(qemu, signal.SIGKILL)
                    delivered += 1
                except ProcessLookupError:
                    pass
            vm.communicate(timeout=60)
            time.sleep(0.3)  # the WAV file thread closes the file after the stream went
            if host.poll() is not None:
                raise Failure(f"vsnd-host ended after kill {i + 1} ({at:.2f} s after {anchor})")
            frames = 0
            if os.path.exists(whole):
                with wave.open(whole) as w:
                    frames = w.getnframes()
                if frames:
                    env.compare(ref, whole, prefix=True)
                os.remove(whole)
            phase = ("before any audio" if frames == 0 else
                     "mid-stream" if frames < 96000 else "in the drain or after")
            phases[phase] = phases.get(phase, 0) + 1
        env.run_vm(agent_play("--seconds 1", "/mnt/share/ref.wav"), backend=False)
        print(f"after {kills} kills: " + env.compare(ref, whole))
        print(f"{delivered} of {kills} sessions killed (the rest ended first); by what the host WAV "
              "holds: " + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())))
        if host.poll() is not None:
            raise Failure("vsnd-host ended")
    with open(os.path.join(env.work, "vsnd-host.log")) as f:
        text = f.read()
    started = text.count("device started")
    print(f"vsnd-host: {text.count('front-end connected')} connections, {started} device starts, "
          f"{text.count('front-end disconnected') + text.count('closed:')} ends logged")


def case_stress(env):
    """Play and record at once beside two busy loops (the host overloaded), VSND_STRESS_SECONDS
    (default 20) of audio, VSND_STRESS_RUNS times in a row (default 1; the soak: 20). A lost
    notification stalls a stream for good (the guest's write fails with EIO); vsnd-host notifies
    again when the guest has not taken a completion 10 ms after its notification, and says how
    often it had to. vsnd-host runs at --rt-priority 20 and reports its deadline timer's lateness.
    Every run: both programs succeed, both directions bit-exact."""
    seconds = float(os.environ.get("VSND_STRESS_SECONDS", "20"))
    runs = int(os.environ.get("VSND_STRESS_RUNS", "1"))
    frames = int(seconds * 48000)
    src = os.path.join(env.work, "capture.wav")
    subprocess.run([env.wav_tool, "gen", src, "--format", "S16", "--frames", str(frames + 48000)], check=True)
    guest = (f"vsnd-guest-agent record --frames {frames} --period 480 --periods 8 --out-wav /mnt/share/rec.wav & "
             f"{agent_play(f'--seconds {seconds:g} --period 480 --periods 8', '/mnt/share/ref.wav')}; p=$?; "
             "wait $!; r=$?; echo \"play $p record $r\"; [ $p = 0 ] && [ $r = 0 ]")
    limit = str(int(seconds * 4 + 90))
    for run in range(1, runs + 1):
        shutil.rmtree(env.out)
        os.makedirs(env.out)
        hogs = [subprocess.Popen(["timeout", limit, "sh", "-c", "while :; do :; done"], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(2)]
        t = time.monotonic()
        try:
            # At real-time priority, as a sound server's audio thread: without it the busy loops
            # held vsnd-host back up to 63 ms (its deadline timer's lateness, logged per connection),
            # and a burst of completions after that overran the guest's 80 ms capture buffer.
            env.run_vm(guest, host_args=("--capture-wav", src, "--rt-priority", "20"), timeout=int(limit))
        finally:
            load = open("/proc/loadavg").read().split()[0]
            for h in hogs:  # the loop and its timeout: the whole group
                os.killpg(h.pid, signal.SIGKILL)
                h.wait()
        play = env.compare(os.path.join(env.share, "ref.wav"), os.path.join(env.out, "stream-0.wav"))
        rec = env.compare(src, os.path.join(env.share, "rec.wav"), prefix=True)
        note = late = rt_warn = ""
        with open(os.path.join(env.work, "vsnd-host.log"), errors="replace") as f:
            for line in f:
                if "notifications: lead" in line:
                    note = line.split("notifications: ", 1)[1].strip()
                if "deadline timer late by" in line:
                    late = "deadline timer late by " + line.split("deadline timer late by ", 1)[1].strip()
                if "--rt-priority" in line and "running at normal priority" in line:
                    rt_warn = "; WARNING, not at real-time priority: " + line.strip()
        print(f"run {run}/{runs} ({time.monotonic() - t:.0f} s, load {load}): play {play}; record {rec}; vsnd-host: {note}; {late}{rt_warn}")


def check_sanitizer_reports(work):
    """A vsnd-host of the ASan+UBSan build reports into its log; any report fails the case."""
    for root, _, files in os.walk(work):
        for name in files:
            if name.endswith(".log"):
                with open(os.path.join(root, name), errors="replace") as f:
                    text = f.read()
                for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                    if marker in text:
                        i = text.index(marker)
                        raise Failure(f"sanitizer report in {name}:\n{text[max(0, i - 200):i + 3000]}")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=sorted(CASES) + ["all"])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "default"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    # A terminated run unwinds: its busy loops, run-vm (and with it QEMU and vsnd-host) are stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    failed = 0
    for name in sorted(CASES) if args.case == "all" else [args.case]:
        work = tempfile.mkdtemp(prefix=f"vsnd-vm-{name}-")
        t = time.monotonic()
        try:
            CASES[name](Env(args.build_dir, work))
            check_sanitizer_reports(work)
            print(f"PASS {name} ({time.monotonic() - t:.1f} s)")
        except Failure as e:
            failed += 1
            print(f"FAIL {name}: {e}\n  (work dir kept: {work})")
            continue
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
