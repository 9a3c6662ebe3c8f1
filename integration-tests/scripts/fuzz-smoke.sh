#!/usr/bin/env bash
# Runs every cargo-fuzz target of integration-tests/fuzz for FUZZ_SECONDS
# (default 20) each, starting from its committed seed corpus, and fails if
# any target crashes (a panic, a failed check, a sanitizer report, a leak, an
# input slower than FUZZ_INPUT_TIMEOUT seconds, an allocation over
# libFuzzer's limit). Installs cargo-fuzz if it is missing; needs the nightly
# toolchain (cargo-fuzz builds with sanitizers, which stable cannot).
#
#   integration-tests/scripts/fuzz-smoke.sh              # every target, 20 s
#   FUZZ_SECONDS=600 integration-tests/scripts/fuzz-smoke.sh load_linux cmos
#
# New inputs a run finds go to a scratch directory, not to the committed
# corpus; a crashing input is kept in integration-tests/fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-30}
FUZZ_DIR=integration-tests/fuzz
CARGO_FUZZ_VERSION=0.13.2

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz-smoke: the nightly toolchain is missing (cargo-fuzz needs it for -Zsanitizer)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# -a: debug assertions and overflow checks, so arithmetic that would wrap in
# a release build is caught too.
fuzz=(cargo +nightly fuzz)
build_flags=(--fuzz-dir "$FUZZ_DIR" -a)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$FUZZ_DIR")
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz-smoke: no fuzz targets found" >&2; exit 1; }

echo "== building ${#targets[@]} fuzz targets"
"${fuzz[@]}" build "${build_flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0
failures=()
for t in "${targets[@]}"; do
  seeds="$FUZZ_DIR/corpus/$t"
  if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
    echo "fuzz-smoke: $t has no seed corpus in $seeds" >&2
    failed=$((failed + 1))
    failures+=("$t (no seeds)")
    continue
  fi
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  echo "== $t: ${FUZZ_SECONDS}s from $(ls "$seeds" | wc -l) seeds"
  if "${fuzz[@]}" run "${build_flags[@]}" "$t" "$scratch/$t" "$seeds" -- \
      -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_INPUT_TIMEOUT" \
      -print_final_stats=1 >"$log" 2>&1; then
    # The last status line: executions, coverage, speed.
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
    passed=$((passed + 1))
  else
    tail -n 60 "$log" >&2
    echo "fuzz-smoke: $t FAILED; the input is in $FUZZ_DIR/artifacts/$t/" >&2
    failed=$((failed + 1))
    failures+=("$t")
  fi
done

echo "fuzz: $passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}" >&2
  exit 1
fi
