#!/bin/sh
# CPU side by side: bitnet-chat vs bitnet.cpp (I2_S) vs ik_llama.cpp (IQ2_BN, -rtr 1) on one file
# with the BitNet-b1.58-2B-4T shapes (random ternary weights), prefill 512 and decode 64, same
# thread count, alternated rounds, medians and paired ratios (kernels/dev/bench_cpu_peers.py).
#
# Usage (from the repository root, after building bitnet-chat in build/):
#   sh kernels/dev/bench_cpu_peers.sh [ROUNDS] [THREADS] [PEERS]   default 8 rounds, 2 threads
# A PEERS folder made before (e.g. another checkout's .peers with both peers built and the models
# written) is used as it is: every step below is skipped when its output exists.
# Environment (paths only; nothing here changes what an engine computes):
#   PEERS    work folder (default ./.peers, git-ignored; the 3rd argument wins): peer trees,
#            builds, models, logs
#   IK_GIT   git dir of github ikawrakow/ik_llama.cpp          (default: the local mirror)
#   BN_GIT   git dir of github ygqdan/BitNet-linux, which vendors microsoft/BitNet with its
#            llama.cpp fork (Microsoft's own submodule commit is not fetchable here;
#            research/peers-cpu.md explains the choice)                 (default: the local mirror)
#   TOKENIZER  a Llama 3 tokenizer.json (default /work/shared/tokenizer/llama3/tokenizer.json)
#   BITNET_CHAT  our binary (default build/bitnet-chat)
# Every step is skipped when its output exists, so a second run goes straight to the rounds.
# Peer code is exported into $PEERS and built there; it never enters the repository.
set -eu
ROUNDS=${1:-8}
THREADS=${2:-2}
ROOT=$(pwd)
PEERS=${3:-${PEERS:-$ROOT/.peers}}
IK_GIT=${IK_GIT:-/work/.mirror/ikawrakow+ik_llama.cpp/repo}
BN_GIT=${BN_GIT:-/work/.mirror/ygqdan+BitNet-linux/repo}
TOKENIZER=${TOKENIZER:-/work/shared/tokenizer/llama3/tokenizer.json}
BITNET_CHAT=${BITNET_CHAT:-$ROOT/build/bitnet-chat}
mkdir -p "$PEERS/models" "$PEERS/logs"
say() { echo "[bench_cpu_peers] $*" >&2; }

# Export a tree from a git dir, file by file (some mirrors lack a few large blobs: web UI, vocab
# files; none is needed to build). $3: extended regex of paths to leave out.
export_tree() {
    git_dir=$1 out=$2 skip=$3
    [ -f "$out/.exported" ] && return 0
    say "exporting $(git -C "$git_dir" rev-parse --short HEAD) of $git_dir into $out"
    mkdir -p "$out"
    git -C "$git_dir" ls-tree -r HEAD | grep -v -E "$skip" | while read -r _ _ obj path; do
        mkdir -p "$out/$(dirname "$path")"
        git -C "$git_dir" cat-file blob "$obj" > "$out/$path" 2>/dev/null || rm -f "$out/$path"
    done
    git -C "$git_dir" rev-parse HEAD > "$out/.exported"
}

if [ ! -x "$PEERS/ik/build/bin/llama-bench" ]; then
    export_tree "$IK_GIT" "$PEERS/ik" '	(models/|docs/|tests/|media/|examples/server/public)|	"'
    say "building ik_llama.cpp (Release, native, OpenMP; llama-bench, llama-quantize)"
    (cd "$PEERS/ik" && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DGGML_IQK_FA_ALL_QUANTS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF >/dev/null &&
     nice -n 19 ninja -C build -j1 llama-bench llama-quantize >/dev/null)
fi
if [ ! -x "$PEERS/bitnet/build/bin/llama-bench" ]; then
    export_tree "$BN_GIT" "$PEERS/bitnet" '	(media/|assets/|docs/|gpu/|3rdparty/llama.cpp/(models|docs|media)/)|	"'
    # the vendored tree lacks common/cmake/build-info-gen-cpp.cmake: write the build-info source
    # the way that script would (fixed strings; only printed by the tools)
    bi=$PEERS/bitnet/3rdparty/llama.cpp/common/cmake
    mkdir -p "$bi"
    [ -f "$bi/build-info-gen-cpp.cmake" ] || cat > "$bi/build-info-gen-cpp.cmake" <<'CM'
set(BUILD_NUMBER 0)
set(BUILD_COMMIT "vendored")
set(BUILD_COMPILER "clang")
set(BUILD_TARGET "x86_64")
configure_file(${CMAKE_CURRENT_LIST_DIR}/../build-info.cpp.in ${CMAKE_CURRENT_LIST_DIR}/../build-info.cpp)
CM
    say "building bitnet.cpp as its setup_env.py does for x86 I2_S (clang, Release, TL2 off)"
    (cd "$PEERS/bitnet" && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBITNET_X86_TL2=OFF \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF >/dev/null &&
     nice -n 19 ninja -C build -j1 llama-bench llama-quantize llama-cli >/dev/null)
fi

# The model: F16 with ternary linears (our generator, using the peer tree's gguf-py), then our
# convert to the official I2_S layout (bitnet.cpp reads it unchanged) and ik's quantize to IQ2_BN.
if [ ! -f "$PEERS/models/i2s.gguf" ]; then
    if [ ! -f "$PEERS/models/f16.gguf" ]; then
        [ -x "$PEERS/venv/bin/python" ] || { python3 -m venv "$PEERS/venv" && "$PEERS/venv/bin/pip" -q install numpy pyyaml; }
        say "writing the random F16 model (4.8 GB)"
        PYTHONPATH="$PEERS/ik/gguf-py" "$PEERS/venv/bin/python" "$ROOT/kernels/dev/gen_b158_f16.py" \
            "$TOKENIZER" "$PEERS/models/f16.gguf"
    fi
    "$BITNET_CHAT" convert "$PEERS/models/f16.gguf" "$PEERS/models/i2s.gguf"
fi
if [ ! -f "$PEERS/models/iq2bn.gguf" ]; then
    "$PEERS/ik/build/bin/llama-quantize" --token-embedding-type f16 --output-tensor-type f16 \
        "$PEERS/models/f16.gguf" "$PEERS/models/iq2bn.gguf" IQ2_BN "$THREADS" >/dev/null
fi

python3 "$ROOT/kernels/dev/bench_cpu_peers.py" --rounds "$ROUNDS" --threads "$THREADS" --peers "$PEERS" \
    --bitnet-chat "$BITNET_CHAT"
