#!/usr/bin/env bash
# Start-up bench: process start to the guest's end, whole process, for
#   raw       a raw KVM loop in C (integration-tests/benches/startup_raw.c)
#             running the seed guest: the floor any VMM pays;
#   hello     vmm-bin --kernel integration-tests/guests/hello.bin --reg rax=2 --reg rbx=2
#             (12-byte real-mode guest, minimal platform; prints 4, halts);
#   elf64     vmm-bin --kernel integration-tests/guests/hello_reset.elf
#             (ELF64 in long mode, minimal platform; prints hello, triple-faults);
#   elf64-pc  the same with --platform pc (irqchip, PIT, ACPI and MP tables,
#             the PC device set; the i8042 reset ends it).
# The four run interleaved, ROUNDS times, in a new random order each round, so
# they share the machine's load;
# integration-tests/benches/spawn_time.c times each from spawn to the last byte
# the guest printed (the guest's end: it halts or resets right after) and to
# reaping (the whole process, with the VM's teardown in the kernel), and takes
# its user + system CPU. Reports median and [p25, p75] ms of both, CPU ms, and
# the ratio to the raw loop of the same round (median [p25, p75]), which
# cancels much of the load of a shared machine. Then the medians of vmm-bin's
# `--stats` start-up phases, from separate runs in the same rounds (the timed
# runs print nothing). Nothing here asserts a time: the targets are reported.
#
# Usage: integration-tests/scripts/bench-startup.sh
# Knobs (environment): STARTUP_ROUNDS (default 40); STARTUP_COMPARE=PATH adds
# another vmm-bin (say, a build of the commit before a change) to the same
# rounds as base-hello, base-elf64, base-elf64-pc, for before/after figures
# measured together. Needs read/write /dev/kvm, gcc, and a release build
# (made here).
set -euo pipefail

root=$(cd "$(dirname "$0")" && pwd)
while [ ! -f "$root/Cargo.toml" ] || ! grep -q '^\[workspace\]' "$root/Cargo.toml"; do
  if [ "$root" = / ]; then
    echo "bench-startup.sh: no Cargo workspace above $(dirname "$0")" >&2
    exit 2
  fi
  root=$(dirname "$root")
done
cd "$root"
# .cargo/config.toml names the target, so binaries are under its triple.
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${STARTUP_ROUNDS:-40}

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "bench-startup.sh: /dev/kvm is not accessible for reading and writing" >&2
  exit 8
fi
if ! command -v gcc >/dev/null; then
  echo "bench-startup.sh: gcc is needed for the raw loop (apt-get install gcc)" >&2
  exit 2
fi

echo "== building (release)"
cargo build --release -p vmm-bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Copies run: a file the linker has just written sits in the page cache in
# small pieces and costs about 20 more page faults per start (0.1-0.2 ms
# here) than one written in large blocks, as a copied or installed binary is.
cp "$target/x86_64-unknown-linux-gnu/release/vmm-bin" "$work/vmm-bin"
vmm=$work/vmm-bin
compare=${STARTUP_COMPARE:-}
if [ -n "$compare" ]; then
  cp "$compare" "$work/vmm-bin-base"
  compare=$work/vmm-bin-base
fi
gcc -O2 -Wall -o "$work/startup_raw" integration-tests/benches/startup_raw.c
gcc -O2 -Wall -o "$work/spawn_time" integration-tests/benches/spawn_time.c
hello=integration-tests/guests/hello.bin
elf=integration-tests/guests/hello_reset.elf

labels=(raw hello elf64 elf64-pc)
vmms=(hello elf64 elf64-pc)
if [ -n "$compare" ]; then
  labels+=(base-hello base-elf64 base-elf64-pc)
  vmms+=(base-hello base-elf64 base-elf64-pc)
fi
# Expected exit statuses (halt 0, triple fault 4, guest reset 14) and output
# sizes ("4\n", "hello\n").
declare -A want=([raw]=0 [hello]=0 [elf64]=4 [elf64-pc]=14)
declare -A want_bytes=([raw]=2 [hello]=2 [elf64]=6 [elf64-pc]=6)
cmd() {
  local bin=$vmm l=$1
  if [ "${l#base-}" != "$l" ]; then
    bin=$compare
    l=${l#base-}
  fi
  case $l in
    raw) echo "$work/startup_raw $hello" ;;
    hello) echo "$bin --kernel $hello --reg rax=2 --reg rbx=2" ;;
    elf64) echo "$bin --kernel $elf" ;;
    elf64-pc) echo "$bin --kernel $elf --platform pc" ;;
  esac
}

load_before=$(uptime)
echo "== $rounds rounds (load: $load_before)"
times=$work/times
phases=$work/phases
: >"$times"
: >"$phases"
# One warm-up round: page cache, the binary's pages, KVM's module state.
for l in "${labels[@]}"; do
  # shellcheck disable=SC2046
  "$work/spawn_time" $(cmd "$l") >/dev/null
done
for ((r = 1; r <= rounds; r++)); do
  # A new order each round: no variant always follows the same one.
  for l in $(printf '%s\n' "${labels[@]}" | shuf); do
    # shellcheck disable=SC2046
    read -r wall output cpu status bytes < <("$work/spawn_time" $(cmd "$l"))
    if [ "$status" != "${want[${l#base-}]}" ] || [ "$bytes" != "${want_bytes[${l#base-}]}" ]; then
      echo "bench-startup.sh: $l exited with status $status after $bytes bytes of output," \
        "expected ${want[${l#base-}]} and ${want_bytes[${l#base-}]}: $(cmd "$l")" >&2
      exit 1
    fi
    echo "$r $l $wall $cpu $output" >>"$times"
  done
  for l in $(printf '%s\n' "${vmms[@]}" | shuf); do
    # shellcheck disable=SC2046
    $(cmd "$l") --stats 2>&1 >/dev/null |
      awk -v l="$l" '/^    [a-z_]+ +[0-9.]+ms$/ {sub("ms", "", $2); print l, $1, $2}
        /startup \(VMM start to guest entry\)=/ {split($0, a, "="); sub("ms", "", a[2]); print l, "total", a[2]}' >>"$phases" ||
      true # the elf64 guests end with non-zero statuses
  done
done
load_after=$(uptime)

# quantiles FILE-OF-NUMBERS -> "p25 median p75" (nearest rank)
quant() {
  sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "- - -"; exit }
    i25 = int((NR - 1) * 0.25) + 1; i50 = int((NR - 1) * 0.5) + 1; i75 = int((NR - 1) * 0.75) + 1
    printf "%.3f %.3f %.3f\n", v[i25], v[i50], v[i75] }'
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=$( [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ", with uncommitted changes" || true)
echo
echo "================ start-up (commit $commit$dirty; $(nproc) CPUs, $(uname -r)) ================"
echo "load before: $load_before"
echo "load after:  $load_after"
# ratio LABEL COLUMN -> "p25 median p75" of LABEL / raw, round by round
ratio() {
  awk -v l="$1" -v c="$2" '$2 == "raw" {raw[$1] = $c} $2 == l {mine[$1] = $c}
    END {for (r in mine) if (raw[r] > 0) print mine[r] / raw[r]}' "$times" | quant
}
echo "$rounds interleaved rounds; ms from spawn, median [p25, p75]; ratio = this / raw loop of the same round."
echo "to guest end = to its last byte of output (it halts or resets next); whole = to reaping:"
printf '  %-13s %-22s %-22s %-22s %-22s %7s\n' "" "to guest end" "vs raw" "whole process" "vs raw" "CPU ms"
for l in "${labels[@]}"; do
  read -r o25 o50 o75 < <(awk -v l="$l" '$2 == l {print $5}' "$times" | quant)
  read -r w25 w50 w75 < <(awk -v l="$l" '$2 == l {print $3}' "$times" | quant)
  read -r _ c50 _ < <(awk -v l="$l" '$2 == l {print $4}' "$times" | quant)
  if [ "$l" = raw ]; then
    ro="-"
    rw="-"
  else
    read -r a b c < <(ratio "$l" 5)
    ro="${b}x [$a, $c]"
    read -r a b c < <(ratio "$l" 3)
    rw="${b}x [$a, $c]"
  fi
  printf '  %-13s %-22s %-22s %-22s %-22s %7s\n' "$l" "$o50 [$o25, $o75]" "$ro" "$w50 [$w25, $w75]" "$rw" "$c50"
done

echo
echo "vmm-bin --stats start-up phases, median ms of $rounds runs (VMM start to vCPU 0's first KVM_RUN):"
header=$(printf '  %-12s' phase)
for l in "${vmms[@]}"; do header+=$(printf ' %13s' "$l"); done
echo "$header"
for p in parse memory load kvm_setup devices seccomp threads first_entry total; do
  row=$(printf '  %-12s' "$p")
  for l in "${vmms[@]}"; do
    read -r _ m _ < <(awk -v l="$l" -v p="$p" '$1 == l && $2 == p {print $3}' "$phases" | quant)
    row+=$(printf ' %13s' "$m")
  done
  echo "$row"
done

echo
read -r _ hr _ < <(ratio hello 5)
read -r _ hw _ < <(ratio hello 3)
read -r _ ew _ < <(awk '$2 == "elf64" {print $3}' "$times" | quant)
read -r _ pw _ < <(awk '$2 == "elf64-pc" {print $3}' "$times" | quant)
verdict() { awk -v a="$1" -v b="$2" 'BEGIN {print (a <= b) ? "met" : "missed"}'; }
echo "targets: hello to its halt within 1.25x of raw: ${hr}x ($(verdict "$hr" 1.25); whole process ${hw}x);"
echo "         elf64 whole process within 3 ms: $ew ms ($(verdict "$ew" 3)); elf64-pc: $pw ms ($(verdict "$pw" 3))"
