#!/bin/sh
# Bounded fuzz smoke run (ctest label "fuzz"): builds the libFuzzer targets with clang in a
# side build (or uses those of a -DBITNET_FUZZ=ON build) and runs each for a few seconds on
# its seed corpus. Skips visibly when clang or libFuzzer is missing.
# Longer runs by hand: build-fuzz/tests/fuzz_gguf -max_total_time=600 NEW_DIR tests/fuzz/corpus_gguf
secs=${BN_FUZZ_SECONDS:-12}
src=${BN_SOURCE_DIR:?}
bin=${BN_BINARY_DIR:?}
if [ -x "$bin/tests/fuzz_history_text" ]; then
    fz="$bin/tests"
else
    command -v clang >/dev/null 2>&1 || { echo "SKIP: clang not found (fuzz targets need clang)"; exit 77; }
    b="$bin/fuzz-smoke"
    gen=""
    command -v ninja >/dev/null 2>&1 && gen="-G Ninja"
    if ! cmake -S "$src" -B "$b" $gen -DCMAKE_C_COMPILER=clang -DBITNET_FUZZ=ON -DBITNET_CUDA=OFF \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$b.log" 2>&1; then
        cat "$b.log"; echo "fuzz side build: configure failed"; exit 1
    fi
    cmake --build "$b" -j2 --target fuzz_gguf fuzz_safetensors fuzz_tokenizer_json \
            fuzz_hf_folder fuzz_history_text >>"$b.log" 2>&1 ||
        { tail -40 "$b.log"; echo "fuzz side build failed"; exit 1; }
    fz="$b/tests"
fi
status=0
for t in gguf safetensors tokenizer_json hf_folder history_text; do
    case $t in
    tokenizer_json) corpus=corpus_tokenizer ;;
    history_text) corpus=corpus_history ;;
    *) corpus=corpus_$t ;;
    esac
    work="$bin/fuzz-work/$t"
    mkdir -p "$work"
    echo "== fuzz_$t for ${secs}s (seeds: tests/fuzz/$corpus)"
    if ! "$fz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$work/" "$work" "$src/tests/fuzz/$corpus" >"$work.log" 2>&1; then
        tail -60 "$work.log"; echo "fuzz_$t FOUND A FAILURE (reproducer in $work/)"; status=1
    else
        grep -E "stat::number_of_executed_units|stat::new_units_added" "$work.log"
    fi
done
exit $status
