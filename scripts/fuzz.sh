#!/usr/bin/env bash
# A short fuzzing run of every target in fuzz/ (what CI runs; see fuzz/README.md):
# installs cargo-fuzz if missing, builds the targets on the stable toolchain (no sanitizer,
# which is what needs nightly), then runs each one for a fixed time on a copy of the seed
# corpus in fuzz/corpus (the repository is never modified).
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECONDS (default 10) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh wire_inspect
#   FUZZ_BUILD_ONLY=1 scripts/fuzz.sh      # the checks and the build only (scripts/test.sh)
#
# The build goes to SIGHTLINE_FUZZ_TARGET_DIR (default ~/.cache/sightline/fuzz-target), outside
# the clone, so that a new clone on the same machine reuses the instrumented dependencies.
# A failing target leaves its crash input in the printed directory (and libFuzzer prints it
# as base64); reproduce with `cargo fuzz run -s none <target> <file>` in fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

cargo_fuzz_version=0.13.2
seconds=${FUZZ_SECONDS:-10}
target_dir=${SIGHTLINE_FUZZ_TARGET_DIR:-$HOME/.cache/sightline/fuzz-target}

if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# `--sanitizer none`: AddressSanitizer needs a nightly compiler, and the code under test has
# no `unsafe`; the coverage instrumentation and `--cfg fuzzing` work on stable.
flags=(--sanitizer none --target-dir "$target_dir")

start=$(date +%s)
# fuzz/ is its own workspace (the root's fmt and clippy do not see it): the same checks here, without
# --locked (as the build: fuzz/Cargo.lock follows the crates; see fuzz/README.md).
# Its clippy shares the main workspace's build directory, where the root's clippy (scripts/test.sh)
# has already checked most of the same dependencies.
(cd fuzz && cargo fmt --check && cargo clippy --target-dir "${CARGO_TARGET_DIR:-$root/target}" --all-targets -- -D warnings)
(cd fuzz && cargo fuzz build "${flags[@]}")
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"
if [ "${FUZZ_BUILD_ONLY:-}" = 1 ]; then
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sightline-fuzz.XXXXXX")
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp "$root/fuzz/corpus/$t/"* "$work/$t/corpus/"
  echo "fuzz: $t for ${seconds} s"
  if ! (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "$work/$t/corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/$t/artifacts/") >"$work/$t/log" 2>&1; then
    failed+=("$t")
    tail -n 60 "$work/$t/log"
    echo "fuzz: $t FAILED; crash input and full log in $work/$t"
  else
    grep -E '^(Done|stat::number_of_executed_units)' "$work/$t/log" || true
  fi
done

echo "fuzz: ${#targets[@]} targets in $(($(date +%s) - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}"
  exit 1
fi
rm -rf "$work"
echo "fuzz: $((${#targets[@]})) passed, 0 failed"
