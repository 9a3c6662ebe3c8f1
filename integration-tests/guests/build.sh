#!/usr/bin/env bash
# Assembles every guests/*.S into a flat binary next to it (GNU as + objcopy):
# NAME.S gives NAME.bin; NAME.elf.S, a source that writes its own ELF headers,
# gives NAME.elf. `as --64` assembles the .code16 guests to the same bytes as
# --32 and accepts the .code64 ones.
# Usage: guests/build.sh [OUTDIR]   (default: guests/)
set -euo pipefail
src_dir=$(cd "$(dirname "$0")" && pwd)
out_dir=${1:-$src_dir}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for s in "$src_dir"/*.S; do
  name=$(basename "$s" .S)
  case $name in
    *.elf) out=$name ;;
    *) out=$name.bin ;;
  esac
  as --64 -o "$tmp/$name.o" "$s"
  objcopy -O binary -j .text "$tmp/$name.o" "$out_dir/$out"
done
