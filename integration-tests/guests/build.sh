#!/usr/bin/env bash
# Assembles every guests/*.S into a flat binary next to it (GNU as + objcopy).
# Usage: guests/build.sh [OUTDIR]   (default: guests/)
set -euo pipefail
src_dir=$(cd "$(dirname "$0")" && pwd)
out_dir=${1:-$src_dir}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for s in "$src_dir"/*.S; do
  name=$(basename "$s" .S)
  as --32 -o "$tmp/$name.o" "$s"
  objcopy -O binary -j .text "$tmp/$name.o" "$out_dir/$name.bin"
done
