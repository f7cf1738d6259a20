# Benchmarks and tools that are not tests: each prints its method and a same-run baseline ratio.
set(B ${CMAKE_CURRENT_LIST_DIR})
# The CPU backend at the 2B-4T shapes: ./build/tests/bench_cpu [threads] [pp] [tg] [reps]
bn_add_tool(NAME bench_cpu SOURCES ${B}/bench_cpu.c LIBS bn_infer)
# CPU kernel lab: checks fast kernels against _ref, then times them on one thread.
bn_add_tool(NAME cpu_kernels_lab SOURCES ${CMAKE_SOURCE_DIR}/kernels/dev/cpu_kernels_lab.c LIBS bn_kernels)
# Sampler speed: bench_sampler prints ms/token against a full-sort baseline.
bn_add_tool(NAME bench_sampler SOURCES ${B}/bench_sampler.c LIBS bn_infer)
# Engine overhead: bench_engine TOKENIZER_JSON [n] [dim] [layers].
bn_add_tool(NAME bench_engine SOURCES ${B}/bench_engine.c LIBS bn_infer)
# Encoding speed: bench_tokenizer [FILE] prints MB/s against baselines.
bn_add_tool(NAME bench_tokenizer SOURCES ${B}/bench_tokenizer.c LIBS bn_infer)
target_compile_definitions(bench_tokenizer PRIVATE BN_TOK_DIR="${BN_TOK_DIR}/llama3")
# A random-weight model file at a published shape, to time `bitnet-chat -p` on it:
# make_bench_model TOKENIZER OUT.gguf [2b|llama3-8b] [seed].
bn_add_tool(NAME make_bench_model SOURCES ${B}/make_bench_model.c LIBS bn_infer)
# ab_w2a8.sh (with ab_w2a8.c) times the CPU W2A8 kernels of another revision against the tree's.
