#!/usr/bin/env bash
# Runs dwell's coverage-guided fuzz targets (fuzz/, cargo-fuzz + libFuzzer), each for a bounded
# time, on the stable toolchain. Not part of scripts/test.sh: run it by hand (the committed corpus
# is replayed by the normal tests). Installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh                    every target, 60 s each
#   scripts/fuzz.sh report tap         only these
#   FUZZ_SECONDS=600 scripts/fuzz.sh   longer
#
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_SANITIZER (default none; `address`
# passes -Zsanitizer=address, a nightly flag that stable rustc accepts with RUSTC_BOOTSTRAP=1,
# which the script then sets; std stays uninstrumented; see fuzz/README.md), FUZZ_CODEGEN_UNITS (default 16: quicker builds on small machines),
# FUZZ_WORK (where new inputs go, default fuzz/target/work: the committed corpus is only read),
# FUZZ_ARGS (more libFuzzer flags, e.g. "-max_len=8192").
#
# A crash stops that target: its input is in fuzz/artifacts/<target>/; reproduce it with
# `cd fuzz && cargo fuzz run --sanitizer none -O -a <target> artifacts/<target>/crash-…`, fix the
# parser, and commit the input to fuzz/corpus/<target>/ as a regression (the corpus test replays
# it). The script goes on with the next target and exits non-zero if any crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
cgu="${FUZZ_CODEGEN_UNITS:-16}"
all=(api_request label_selector report report_line report_http tap)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$sanitizer" != none ] && [ -z "${RUSTC_BOOTSTRAP:-}" ]; then
  echo "==> --sanitizer $sanitizer: RUSTC_BOOTSTRAP=1 (the stable toolchain's -Z flags)"
  export RUSTC_BOOTSTRAP=1
fi

cd fuzz
work="${FUZZ_WORK:-target/work}"
# -O: release speed; -a: keep debug assertions and overflow checks, as the test profile has.
flags=(--sanitizer "$sanitizer" -O -a --codegen-units "$cgu")
echo "==> cargo fuzz build ${flags[*]}"
cargo fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "artifacts/$t"
  echo "==> $t: ${seconds}s"
  # New inputs go to the scratch directory (first); the committed corpus is read-only seeds.
  # shellcheck disable=SC2086
  if ! cargo fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    ${FUZZ_ARGS:-}; then
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "==> no crash in ${targets[*]}"
