#!/usr/bin/env bash
# virtio-blk read throughput: vmm-bin against QEMU's microvm machine, the same
# guest ELF (integration-tests/guests/virtio/guest.c built with -DPVH, which
# both boot through its PVH entry) reading the same disk image.
#
# The guest (vtest=blk-bench) issues vtest-count=N reads of 64 KiB, 8 in
# flight, spread over the image, and exits through isa-debug-exit. It has no
# clock; this script times whole runs with many and with few requests and
# takes the difference, so VMM start-up, guest boot and tear-down cancel out:
#   per request = (t(MANY) - t(FEW)) / (MANY - FEW)
#   MB/s        = (MANY - FEW) * 64 KiB / (t(MANY) - t(FEW))   (MB = 10^6 bytes)
# Each configuration runs BENCH_RUNS times, interleaved, and the fastest run
# counts (the least disturbed by the machine's other work).
#
#   integration-tests/scripts/bench-block.sh
#   BENCH_FEW=200 BENCH_MANY=4200 BENCH_RUNS=5 BENCH_DISK_MIB=64 integration-tests/scripts/bench-block.sh
#
# Installs Debian's qemu-system-x86 if qemu-system-x86_64 is missing. QEMU
# runs with -cpu host,-arch-capabilities (plain host aborts on MSR 0x10a
# here) and acpi=off, so that microvm announces its virtio-mmio transport on
# the kernel command line (virtio_mmio.device=512@...:IRQ) as vmm-bin does;
# ioapic2=off keeps that IRQ on the first IOAPIC, which the guest programs.
set -euo pipefail
cd "$(dirname "$0")/../.."

FEW=${BENCH_FEW:-200}
MANY=${BENCH_MANY:-4200}
RUNS=${BENCH_RUNS:-5}
DISK_MIB=${BENCH_DISK_MIB:-64}
REQ_BYTES=65536

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  echo "bench-block: installing qemu-system-x86" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends qemu-system-x86 >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends qemu-system-x86 >/dev/null; }
fi
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "bench-block: /dev/kvm is not usable" >&2; exit 1; }

echo "== building vmm-bin (release) and the PVH guest"
cargo build -q --release -p vmm-bin
# The triple: .cargo/config.toml names the target.
vmm=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/vmm-bin
guest=$(cargo run -q -p integration-tests --example virtio_guest -- pvh)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
disk=$work/disk.img
head -c $((DISK_MIB << 20)) /dev/urandom >"$disk"
cat "$disk" >/dev/null # in the page cache for both

# run_ours N / run_qemu N: one run; prints its wall time in ns, fails unless
# the guest finished all N requests without an error.
check() { # log n
  grep -q "^bench-requests $2\$" "$1" && grep -q '^bench-errors 0$' "$1" && grep -q '^done$' "$1" ||
    { echo "bench-block: the guest did not finish $2 requests:" >&2; cat "$1" >&2; exit 1; }
}

# irqs log who n: keeps the interrupts the guest took (its bench-irqs line).
irqs() {
  awk '/^bench-irqs /{ print $2 }' "$1" >>"$work/irqs-$2-$3"
}

run_ours() {
  local n=$1 log=$work/ours.log t0 t1 st=0
  t0=$(date +%s%N)
  "$vmm" --kernel "$guest" --cmdline "vtest=blk-bench vtest-count=$n" \
    --disk "path=$disk,readonly=on" --timeout 300 </dev/null >"$log" 2>"$work/ours.err" || st=$?
  t1=$(date +%s%N)
  [ "$st" = 1 ] || { echo "bench-block: vmm-bin exited $st" >&2; cat "$work/ours.err" >&2; exit 1; }
  check "$log" "$n"
  irqs "$log" ours "$n"
  echo $((t1 - t0))
}

run_qemu() {
  local n=$1 log=$work/qemu.log t0 t1 st=0
  rm -f "$log"
  t0=$(date +%s%N)
  qemu-system-x86_64 -M microvm,acpi=off,ioapic2=off -cpu host,-arch-capabilities -enable-kvm \
    -m 128 -nodefaults -no-user-config -nographic -no-reboot \
    -global virtio-mmio.force-legacy=false \
    -device virtio-blk-device,drive=d -drive "id=d,file=$disk,format=raw,if=none,readonly=on" \
    -kernel "$guest" -append "vtest=blk-bench vtest-count=$n" \
    -debugcon "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=4 \
    </dev/null >"$work/qemu.err" 2>&1 || st=$?
  t1=$(date +%s%N)
  # isa-debug-exit: (0 << 1) | 1.
  [ "$st" = 1 ] || { echo "bench-block: QEMU exited $st" >&2; cat "$work/qemu.err" >&2; exit 1; }
  check "$log" "$n"
  irqs "$log" qemu "$n"
  echo $((t1 - t0))
}

min() { sort -n | head -1; }

echo "== $RUNS runs each of $FEW and $MANY reads of 64 KiB (depth 8) over $DISK_MIB MiB"
declare -A times
for r in $(seq "$RUNS"); do
  for who in ours qemu; do
    for n in "$FEW" "$MANY"; do
      t=$("run_$who" "$n")
      times[$who-$n]+="$t "
      awk -v r="$r" -v w="$who" -v n="$n" -v t="$t" \
        'BEGIN { printf "  run %d %-4s %5d requests %8.1f ms\n", r, w, n, t / 1e6 }'
    done
  done
done

per_request_irqs() { # who -> interrupts per request, median of the longer runs
  sort -n "$work/irqs-$1-$MANY" | awk -v n="$MANY" '{ v[NR] = $1 }
    END { printf "%.3f", v[int((NR + 1) / 2)] / n }'
}

report() { # who -> "MB/s us-per-request"
  local few many
  few=$(tr ' ' '\n' <<<"${times[$1-$FEW]}" | grep . | min)
  many=$(tr ' ' '\n' <<<"${times[$1-$MANY]}" | grep . | min)
  local d=$((many - few)) n=$((MANY - FEW))
  [ "$d" -gt 0 ] || { echo "bench-block: $1: the longer run was not slower" >&2; exit 1; }
  awk -v n="$n" -v b="$REQ_BYTES" -v d="$d" 'BEGIN { print n * b * 1000 / d, d / n / 1000 }'
}

read -r ours_mbs ours_us <<<"$(report ours)"
read -r qemu_mbs qemu_us <<<"$(report qemu)"
echo "== results (fastest of $RUNS; per request = difference of the two run lengths)"
printf '  %-28s %10s %16s %18s\n' "" "MB/s" "us per request" "irqs per request"
printf '  %-28s %10.1f %16.1f %18s\n' "vmm-bin" "$ours_mbs" "$ours_us" "$(per_request_irqs ours)"
printf '  %-28s %10.1f %16.1f %18s\n' "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') microvm" "$qemu_mbs" "$qemu_us" "$(per_request_irqs qemu)"
awk -v a="$ours_mbs" -v b="$qemu_mbs" 'BEGIN { printf "  vmm-bin / QEMU throughput: %.2f\n", a / b }'
