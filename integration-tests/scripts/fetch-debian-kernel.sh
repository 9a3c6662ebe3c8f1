#!/usr/bin/env bash
# Fetches Debian's cloud kernel (linux-image-*-cloud-amd64) through the
# package manager and extracts its bzImage to target/debian-kernel/vmlinuz.
# Idempotent: does nothing if the kernel is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=target/debian-kernel
if [ -s "$dest/vmlinuz" ]; then
  exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
apt-get update -qq >/dev/null
# The metapackage names the current kernel package; download that one.
pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$pkg" ]; then
  echo "fetch-debian-kernel: cannot resolve linux-image-cloud-amd64 with apt-cache" >&2
  exit 1
fi
(cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
cp "$tmp"/x/boot/vmlinuz-* "$dest/vmlinuz"
echo "$pkg" > "$dest/package"
echo "fetch-debian-kernel: $pkg -> $dest/vmlinuz" >&2
