#!/usr/bin/env bash
# The project's test command: installs what a fresh machine lacks, then runs
# every test in the workspace. README and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/../.."

# GNU as + objcopy rebuild integration-tests/guests/*.S to check the committed binaries.
if ! command -v as >/dev/null || ! command -v objcopy >/dev/null; then
  echo "installing binutils (as, objcopy) for the guest sources" >&2
  apt-get update -qq && apt-get install -y -qq binutils >/dev/null
fi
# gcc builds the freestanding virtio driver guest (integration-tests/guests/virtio).
if ! command -v gcc >/dev/null; then
  echo "installing gcc for the virtio test guest" >&2
  apt-get update -qq && apt-get install -y -qq gcc >/dev/null
fi
# The workspace links its binaries statically (.cargo/config.toml): glibc's
# static archives come with libc6-dev.
if [ ! -f /usr/lib/x86_64-linux-gnu/libc.a ]; then
  echo "installing libc6-dev (static glibc) for the static-pie build" >&2
  apt-get update -qq && apt-get install -y -qq libc6-dev >/dev/null
fi
# Debian's gdb drives the GDB stub in integration-tests/tests/gdb.rs.
if ! command -v gdb >/dev/null; then
  echo "installing gdb for the GDB stub tests" >&2
  apt-get update -qq && apt-get install -y -qq gdb >/dev/null
fi
# iproute2's ip makes the network namespace and tap the virtio-net tests use.
if ! command -v ip >/dev/null; then
  echo "installing iproute2 for the virtio-net tests" >&2
  apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi
# A real kernel for the boot tests: Debian's cloud kernel, through apt.
integration-tests/scripts/fetch-debian-kernel.sh
# KVM tests fail loudly without /dev/kvm; say so up front too.
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "WARNING: /dev/kvm is not accessible: every guest-running test will FAIL" >&2
fi

# Guest-running tests are VM-heavy: at most two at once on these 2-core hosts.
cargo test --workspace --locked -- --test-threads=2
