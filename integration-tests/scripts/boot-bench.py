#!/usr/bin/env python3
"""Boot-time comparison on Debian's cloud kernel: this VMM versus QEMU's
microvm machine, measured in the same run.

For each VMM it starts the kernel with the same memory size and command line,
timestamps every serial line from process start, and reports when the
"Linux version" banner and the "Memory: ...K available" line arrived. The
kernel cannot reach userspace on nested-KVM development machines (see the
project notes), so each run is stopped after the "Memory:" line or a timeout.

Also reports this VMM's own share: process start to the guest's first
instruction (the first KVM_RUN), from its -v log, with a warm kernel cache
(the decompressed payload mapped from the cache), a cold one (decompressed
into the cache) and none (decompressed into guest RAM).

Usage: integration-tests/scripts/boot-bench.py [--runs N] [--timeout SECS] [--share-runs N] [--skip-boot]
Needs: target/debian-kernel/vmlinuz (integration-tests/scripts/fetch-debian-kernel.sh),
a release vmm-bin (built here), qemu-system-x86 (installed with apt-get if missing).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KERNEL = os.path.join(ROOT, "target", "debian-kernel", "vmlinuz")
MEMORY = "128"
CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1"


def timed_lines(cmd, stop_marker, timeout):
    """Runs cmd, returns {marker: seconds} for the first banner and Memory lines."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    seen = {}
    lines = []

    def reader():
        for raw in proc.stdout:
            t = time.monotonic() - start
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append((t, line))
            if "Linux version" in line and "banner" not in seen:
                seen["banner"] = t
            if "Memory:" in line and "available" in line and "memory" not in seen:
                seen["memory"] = t
            if stop_marker in line:
                break

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    th.join(timeout)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return seen, lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--share-runs", type=int, default=20)
    ap.add_argument("--skip-boot", action="store_true",
                    help="only measure the VMM's own start-up share")
    args = ap.parse_args()
    if not os.path.exists(KERNEL):
        subprocess.check_call([os.path.join(ROOT, "integration-tests", "scripts", "fetch-debian-kernel.sh")])
    subprocess.check_call(["cargo", "build", "-q", "--release", "-p", "vmm-bin"], cwd=ROOT)
    vmm = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "vmm-bin")
    if shutil.which("qemu-system-x86_64") is None:
        subprocess.check_call(["apt-get", "install", "-y", "-qq", "qemu-system-x86"])

    # QEMU's microvm boots a bzImage through its firmware and the kernel's
    # own decompressor (minutes here); give it the same kernel's vmlinux,
    # which it enters through PVH, as the notes' measurement did.
    vmlinux = os.path.join(os.path.dirname(KERNEL), "vmlinux")
    if not os.path.exists(vmlinux):
        subprocess.check_call(["cargo", "run", "-q", "--release", "-p", "integration-tests",
                               "--bin", "extract_vmlinux", "--", KERNEL, vmlinux], cwd=ROOT)
    # This VMM boots the bzImage itself (host decompression), from a warm
    # kernel cache (filled below) and with the cache off.
    cache = tempfile.mkdtemp(prefix="boot-bench-cache-")
    base = [vmm, "--kernel", KERNEL, "--memory", MEMORY, "--cmdline", CMDLINE,
            "--timeout", str(args.timeout)]
    ours = base + ["--kernel-cache", cache]
    ours_nocache = base + ["--no-kernel-cache"]
    fill = [vmm, "--kernel", KERNEL, "--memory", MEMORY, "--timeout", "0.2",
            "--serial", "none", "--kernel-cache", cache]
    subprocess.run(fill, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    # -cpu host fails here (KVM refuses MSR 0x10a); the default model boots.
    qemu = ["qemu-system-x86_64", "-M", "microvm", "-enable-kvm",
            "-m", MEMORY, "-nodefaults", "-no-user-config", "-nographic",
            "-serial", "stdio", "-kernel", vmlinux, "-append", CMDLINE]
    results = {"vmm-bin": [], "vmm-bin no cache": [], "qemu microvm": []}
    for i in range(0 if args.skip_boot else args.runs):
        for name, cmd in (("vmm-bin", ours), ("vmm-bin no cache", ours_nocache),
                          ("qemu microvm", qemu)):
            seen, lines = timed_lines(cmd, "Memory:", args.timeout)
            results[name].append(seen)
            print(f"run {i + 1} {name}: banner {seen.get('banner', float('nan')):.2f}s, "
                  f"Memory: {seen.get('memory', float('nan')):.2f}s, {len(lines)} lines",
                  flush=True)

    # This VMM's own share: process start to the guest's first instruction,
    # as vmm-core reports it at info level ("guest entered N ms after..."),
    # with a warm kernel cache, a cold one (filled by that run) and none.
    def share(extra):
        p = subprocess.run([vmm, "-v", "--kernel", KERNEL, "--memory", MEMORY, "--cmdline", CMDLINE,
                            "--timeout", "0.2", "--serial", "none"] + extra,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        for line in p.stderr.splitlines():
            if "guest entered" in line:
                return float(line.split("guest entered")[1].split()[0])
        return None
    shares = {"warm kernel cache": [], "cold kernel cache": [], "no kernel cache": []}
    for _ in range(args.share_runs):
        shares["warm kernel cache"].append(share(["--kernel-cache", cache]))
        cold = tempfile.mkdtemp(prefix="boot-bench-cold-")
        shares["cold kernel cache"].append(share(["--kernel-cache", cold]))
        shutil.rmtree(cold, ignore_errors=True)
        shares["no kernel cache"].append(share(["--no-kernel-cache"]))
    shutil.rmtree(cache, ignore_errors=True)
    print("\nsummary (median over runs):")
    for name, runs in results.items():
        b = [r["banner"] for r in runs if "banner" in r]
        m = [r["memory"] for r in runs if "memory" in r]
        fb = f"{statistics.median(b):.2f}s" if b else "not seen"
        fm = f"{statistics.median(m):.2f}s" if m else "not seen"
        print(f"  {name:14} banner {fb:>9}   Memory: {fm:>9}")
    print(f"\nvmm-bin start to guest entry ({args.share_runs} runs each):")
    for name, values in shares.items():
        v = sorted(x for x in values if x is not None)
        if v:
            print(f"  {name:18} median {statistics.median(v):6.2f} ms, min {v[0]:6.2f} ms, "
                  f"max {v[-1]:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
