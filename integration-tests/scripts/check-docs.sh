#!/usr/bin/env bash
# Fails when docs/ARCHITECTURE.md, docs/TUTORIAL.md or README.md name a
# repository path that does not exist (docs that drift are worse than none):
# backticked paths, and relative Markdown links (resolved from the page's
# directory). The tutorial's commands and their output are checked by
# integration-tests/tests/tutorial.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
for doc in docs/ARCHITECTURE.md docs/TUTORIAL.md README.md; do
  # Backticked tokens that look like repository paths: crate dirs and files.
  for p in $(grep -o '`[A-Za-z0-9_./-]*`' "$doc" | tr -d '`' |
             grep -E '^(memory|loader|cpu|devices|vmm-core|vmm-bin|integration-tests|docs|\.ci)(/|$)' | sort -u); do
    if [ ! -e "$p" ]; then
      echo "$doc names '$p', which does not exist" >&2
      status=1
    fi
  done
done
for doc in docs/ARCHITECTURE.md docs/TUTORIAL.md README.md; do
  dir=$(dirname "$doc")
  # ](target) links that are not URLs or in-page anchors.
  for link in $(grep -o '](\([^)#]*\)' "$doc" | sed 's/^](//' |
                grep -vE '^(https?:|mailto:|$)' | sort -u); do
    if [ ! -e "$dir/$link" ]; then
      echo "$doc links to '$link', which does not exist" >&2
      status=1
    fi
  done
done
exit $status
