#!/usr/bin/env bash
# The VMM's performance benchmark: cost per port-I/O exit through the VMM
# against a minimal kvm-ioctls loop (the floor), process start-to-halt time of
# the classic guest, and the VMM's own memory. Prints a summary table at the
# end; criterion's own report lands in target/criterion/.
#
# Usage: integration-tests/scripts/bench.sh [criterion args, e.g. --save-baseline main | --baseline main]
# Knobs (environment): EXIT_COST_ROUNDS, EXIT_COST_N, EXIT_COST_N_SMALL,
# EXIT_COST_VARIANTS, EXIT_COST_PROC_RUNS, EXIT_COST_RSS_RUNS,
# EXIT_COST_CRITERION=0 (skip criterion); see
# integration-tests/benches/exit_cost.rs. Needs read/write /dev/kvm.
set -euo pipefail

# The workspace root: the nearest directory above this script whose
# Cargo.toml declares the workspace (so the script can live anywhere in it).
root=$(cd "$(dirname "$0")" && pwd)
while [ ! -f "$root/Cargo.toml" ] || ! grep -q '^\[workspace\]' "$root/Cargo.toml"; do
  if [ "$root" = / ]; then
    echo "bench.sh: no Cargo workspace above $(dirname "$0")" >&2
    exit 2
  fi
  root=$(dirname "$root")
done
cd "$root"
# .cargo/config.toml names the target, so binaries are under its triple.
target=${CARGO_TARGET_DIR:-$root/target}

# GNU time measures peak RSS (the bench uses it too).
if [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing GNU time (package: time) for peak RSS" >&2
    apt-get install -y -qq time >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
  else
    echo "WARNING: /usr/bin/time missing (apt-get install time): no peak RSS figures" >&2
  fi
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "bench.sh: /dev/kvm is not accessible for reading and writing" >&2
  exit 8
fi

echo "== building (release)"
cargo build --release -p vmm-bin
vmm_bin=$target/x86_64-unknown-linux-gnu/release/vmm-bin
hello=integration-tests/guests/hello.bin
[ -f "$hello" ] || hello=guests/hello.bin

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
echo "== cargo bench -p integration-tests --bench exit_cost"
EXIT_COST_SUMMARY=$summary cargo bench -p integration-tests --bench exit_cost -- "$@"

# Cross-check of peak RSS with GNU time's verbose report (median of 3).
rss_v() {
  local mem=$1 i out
  for i in 1 2 3; do
    out=$(/usr/bin/time -v "$vmm_bin" --kernel "$hello" --reg rax=2 --reg rbx=2 --memory "$mem" 2>&1 >/dev/null)
    echo "$out" | awk -F': ' '/Maximum resident set size/ {print $2}'
  done | sort -n | sed -n 2p
}
if [ -x /usr/bin/time ]; then
  rss_v1=$(rss_v 1)
  rss_v128=$(rss_v 128)
else
  rss_v1=-
  rss_v128=-
fi

get() { awk -F= -v k="$1" '$1 == k {print $2; found=1} END {if (!found) print "-"}' "$summary"; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=$( [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ", with uncommitted changes" || true)
echo
echo "================ summary (commit $commit$dirty; $(nproc) CPUs, $(uname -r)) ================"
echo "Cost per port-I/O exit (16-bit guest: out + loop per exit), slope between two guest sizes;"
echo "CPU = user + system time of the process (immune to other load), wall = elapsed time:"
printf '  %-36s %8s %26s %8s %10s\n' "" "CPU us" "CPU vs floor [p25, p75]" "wall us" "wall vs"
row() {
  local label=$1 key=$2
  if [ "$(get "${key}_us_per_exit")" = - ]; then return; fi
  if [ "$key" = floor ]; then
    printf '  %-36s %8s %26s %8s %10s\n' "$label" "$(get floor_cpu_us_per_exit)" "-" "$(get floor_us_per_exit)" "-"
  else
    printf '  %-36s %8s %26s %8s %10s\n' "$label" "$(get "${key}_cpu_us_per_exit")" \
      "$(get "${key}_cpu_overhead_pct")% [$(get "${key}_cpu_overhead_p25_pct"), $(get "${key}_cpu_overhead_p75_pct")]" \
      "$(get "${key}_us_per_exit")" "$(get "${key}_overhead_pct")%"
  fi
}
row "(a) floor: kvm-ioctls loop" floor
row "(b) VMM library, port 0x10" vmm_10
row "(b) VMM library, port 0x80 (POST)" vmm_80
row "VMM library, .seccomp(false)" vmm_10_noseccomp
row "vmm-bin process, port 0x10" vmm_bin
row "vmm-bin --no-seccomp, port 0x10" vmm_bin_noseccomp
row "vmm-bin --exit-plot, port 0x10" vmm_bin_exit_plot
busy=$(get busy_pct)
if [ "$busy" != - ] && awk -v b="$busy" 'BEGIN {exit !(b > 5)}'; then
  echo "  NOTE: the machine was busy during the run (floor wall time ${busy}% above its CPU time): use the CPU columns"
fi
verdict() { awk -v o="$1" 'BEGIN {if (o == "-") print "?"; else if (o <= 5) print "MET"; else print "NOT MET"}'; }
c=$(get vmm_10_cpu_overhead_pct)
w=$(get vmm_10_overhead_pct)
echo "  target, VMM at most 5% over the floor per exit (library, port 0x10): $(verdict "$c") by CPU time ($c%), $(verdict "$w") by wall time ($w%)"
echo "Where the VMM's extra time per exit goes (CPU time vs floor; each step includes the ones above it):"
for kv in "floor_clock:floor + the 3 clock reads of vmm-cpu's loop" \
          "cpu_loop:vmm-cpu Vcpu::run, null handler" \
          "cpu_dispatch:+ vmm-core dispatcher and bus" \
          "cpu_dispatch_cpuid:+ host CPUID set on the vCPU" \
          "cpu_dispatch_thread:dispatcher/bus, on a vCPU thread" \
          "vmm_10_noseccomp:whole library path, seccomp off" \
          "vmm_10:whole library path (default: seccomp on)"; do
  key=${kv%%:*}
  label=${kv#*:}
  [ "$(get "${key}_cpu_overhead_pct")" = - ] && continue
  printf '  %-48s %+7.2f%%   (userspace handling %s us/exit)\n' "$label" "$(get "${key}_cpu_overhead_pct")" "$(get "${key}_handle_us_per_exit")"
done
echo "Classic guest (hello.bin, rax=2 rbx=2), process start to halt (spawn to exit):"
printf '  %-40s %10s %8s %8s %8s\n' "" "median ms" "p10" "p90" "CPU ms"
for kv in "proc_vmm_mem128:vmm-bin (default --memory 128)" "proc_vmm_mem1:vmm-bin --memory 1" \
          "proc_floor:floor process (kvm-ioctls)"; do
  key=${kv%%:*}
  printf '  %-40s %10s %8s %8s %8s\n' "${kv#*:}" "$(get "${key}_median_ms")" "$(get "${key}_p10_ms")" \
    "$(get "${key}_p90_ms")" "$(get "${key}_cpu_ms")"
done
echo "Memory (KiB): peak RSS, guest RAM touched (resident), the VMM's own = RSS - guest:"
printf '  %-40s %9s %9s %9s %14s\n' "" "peak RSS" "guest" "own" "time -v RSS"
printf '  %-40s %9s %9s %9s %14s\n' "vmm-bin --memory 128" "$(get proc_vmm_mem128_maxrss_kib)" \
  "$(get guest_touched_mem128_kib)" "$(get proc_vmm_mem128_own_kib)" "$rss_v128"
printf '  %-40s %9s %9s %9s %14s\n' "vmm-bin --memory 1" "$(get proc_vmm_mem1_maxrss_kib)" \
  "$(get guest_touched_mem1_kib)" "$(get proc_vmm_mem1_own_kib)" "$rss_v1"
printf '  %-40s %9s\n' "floor process (kvm-ioctls, 1 MiB)" "$(get proc_floor_maxrss_kib)"
printf '  %-40s %9s\n' "/bin/true under the same method" "$(get proc_true_maxrss_kib)"
