#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each on its seed corpus
# (fuzz/corpus/<target>/, copied to a scratch dir so the repo stays clean).
set -euo pipefail
build=${1:?build dir}; secs=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
targets=("$build"/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then echo "fuzz: no targets built"; exit 1; fi
fail=0
for t in "${targets[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  work=$(mktemp -d)
  [ -d "$root/fuzz/corpus/$name" ] && cp -r "$root/fuzz/corpus/$name/." "$work/"
  echo "fuzz: $name for ${secs}s"
  if ! timeout $((secs + 60)) "$t" -max_total_time="$secs" -rss_limit_mb=2048 \
        -artifact_prefix="$build/$name-" "$work" >"$build/$name.log" 2>&1; then
    echo "fuzz: $name FAILED (see $build/$name.log)"; tail -40 "$build/$name.log"; fail=1
  else
    grep -E '^(#[0-9]+|Done)' "$build/$name.log" | tail -1
  fi
  rm -rf "$work"
done
exit $fail
