#!/usr/bin/env bash
# Snapshot figures: pause and resume latency through the library, full
# snapshot create time and file sizes, and restore latency from process
# start to the guest's next instruction, for 128 MiB and 1 GiB guests (an
# idle guest and one whose every page is written). A measurement, not a
# test: nothing is asserted. See integration-tests/src/bin/bench_snapshot.rs.
#
# Usage: integration-tests/scripts/bench-snapshot.sh [MIB...]   (default 128 1024)
# Needs read/write /dev/kvm and about twice the largest size in free space
# under $TMPDIR (the memory file, and the page cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "bench-snapshot.sh: /dev/kvm is not accessible for reading and writing" >&2
  exit 8
fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(128 1024)
echo "== building (release)"
cargo build --release -q -p vmm-bin
cargo build --release -q -p integration-tests --bin bench_snapshot
echo "== $(uname -r), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
"$target/x86_64-unknown-linux-gnu/release/bench_snapshot" "$target/x86_64-unknown-linux-gnu/release/vmm-bin" "${sizes[@]}"
