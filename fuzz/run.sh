#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and fails if any
# crashes, leaving the crashing input in fuzz/artifacts/TARGET/.
#
#   bash fuzz/run.sh 60            # what CI runs
#   bash fuzz/run.sh 1800          # on demand: 30 minutes a target
#   FUZZ_JOBS=1 bash fuzz/run.sh 60  # one target at a time
#   FUZZ_TARGETS="parse_twin" bash fuzz/run.sh 600  # some targets only
#
# New inputs go to fuzz/target/corpus/TARGET, which is git-ignored and kept
# between runs; the committed seeds in fuzz/corpus/TARGET are only read.
# Targets run FUZZ_JOBS at a time (default: the number of cores), each for
# the full SECONDS, after one build of all of them.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${1:-60}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-parse_export parse_twin parse_events parse_c2d parse_jobs parse_state merge_converges apply_plan}"
JOBS=${FUZZ_JOBS:-$(nproc)}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

# A nightly toolchain, as cargo-fuzz expects. Where none can be installed
# (a machine whose network reaches the package registries only), stable
# builds the same targets: without a sanitizer no -Z flag is needed.
if rustup toolchain list | grep -q '^nightly'; then
    TOOLCHAIN=nightly
elif timeout 300 rustup toolchain install nightly --profile minimal; then
    TOOLCHAIN=nightly
else
    echo "fuzz: no nightly toolchain to be had; building with stable" >&2
    TOOLCHAIN=stable
fi

# The build `cargo fuzz build --sanitizer none` makes, without installing
# cargo-fuzz (a 2-3 minute compile on CI's two cores, for a wrapper): the
# libFuzzer coverage passes on the targets' code (RUSTFLAGS with --target
# spare build scripts and proc macros), `cfg(fuzzing)`, and 16 codegen
# units so that the targets build in parallel on two cores for a few
# percent of executions. Safe Rust: AddressSanitizer finds nothing the
# panics don't, and costs build time and half the executions.
# `cargo fuzz run TARGET` runs the same binaries.
SANCOV="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
SANCOV+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
SANCOV+=" -Cllvm-args=-sanitizer-coverage-pc-table"
SANCOV+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
SANCOV+=" -Cllvm-args=-sanitizer-coverage-stack-depth"
SANCOV+=" --cfg fuzzing -Clink-dead-code -Ccodegen-units=16"
echo "fuzz: building ${#TARGETS[@]} targets with $TOOLCHAIN"
RUSTFLAGS="$SANCOV ${RUSTFLAGS:-}" cargo "+$TOOLCHAIN" build --release --target "$TRIPLE" \
    --manifest-path Cargo.toml --bins
BIN="target/$TRIPLE/release"

mkdir -p target/logs
run_one() {
    local target=$1
    local dict=()
    # The JSON dictionary helps the byte-level readers only; the other
    # targets read structured input through `arbitrary`.
    [[ $target == parse_* ]] && dict=(-dict=dict/json.dict)
    mkdir -p "target/corpus/$target" "artifacts/$target"
    "$BIN/$target" -artifact_prefix="artifacts/$target/" \
        "target/corpus/$target" "corpus/$target" \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "${dict[@]}" >"target/logs/$target.log" 2>&1
}

summary() {
    local target=$1 status=$2 log="target/logs/$1.log"
    local done_line execs
    done_line=$(grep -E '^#[0-9]+\s+DONE' "$log" | tail -n 1 || true)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    if [[ $status -eq 0 ]]; then
        echo "fuzz: $target ok: ${execs:-?} executions; ${done_line:-no DONE line}"
    else
        echo "fuzz: $target FAILED (exit $status); its log ends:"
        tail -n 40 "$log"
        find "artifacts/$target" -type f 2>/dev/null | sed 's|^|fuzz: input kept: fuzz/|' || true
    fi
}

declare -A pids=()
failed=0
for target in "${TARGETS[@]}"; do
    while [[ ${#pids[@]} -ge $JOBS ]]; do
        status=0
        wait -n -p done_pid "${!pids[@]}" || status=$?
        summary "${pids[$done_pid]}" "$status"
        [[ $status -eq 0 ]] || failed=1
        unset "pids[$done_pid]"
    done
    echo "fuzz: running $target for ${SECONDS_EACH}s"
    run_one "$target" &
    pids[$!]=$target
done
while [[ ${#pids[@]} -gt 0 ]]; do
    status=0
    wait -n -p done_pid "${!pids[@]}" || status=$?
    summary "${pids[$done_pid]}" "$status"
    [[ $status -eq 0 ]] || failed=1
    unset "pids[$done_pid]"
done
exit "$failed"
