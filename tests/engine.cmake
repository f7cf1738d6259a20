# Engine area: sampler, chat template, event channel, engine thread, one-shot prompt.
# TSan: cmake -S . -B build-tsan -G Ninja -DBITNET_SANITIZE=thread && cmake --build build-tsan
#       ctest --test-dir build-tsan -R 'test_chan|test_engine'
bn_add_test(NAME test_sampler SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_sampler.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_chan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_chan.c
            LIBS bn_infer LABELS cpu)
# The Llama 3 tokenizer is unpacked into the build tree by tests/tokenizer.cmake at configure time.
bn_add_test(NAME test_chat_template SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_chat_template.c
            LIBS bn_infer LABELS cpu ARGS ${CMAKE_BINARY_DIR}/tokenizer-data/llama3)
bn_add_test(NAME test_engine SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_engine.c
            LIBS bn_infer LABELS cpu ARGS ${CMAKE_BINARY_DIR}/tokenizer-data/llama3)
bn_add_script_test(NAME test_prompt_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_prompt_cli.sh
                   LABELS cpu)
bn_add_test(NAME test_perplexity SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_perplexity.c
            LIBS bn_app LABELS cpu)

# Sampler speed (not a test): bench_sampler prints ms/token against a full-sort baseline.
bn_add_tool(NAME bench_sampler SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_sampler.c LIBS bn_infer)

# Engine overhead (not a test): bench_engine TOKENIZER_JSON [n] [dim] [layers].
bn_add_tool(NAME bench_engine SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_engine.c LIBS bn_infer)
# A fault in the engine thread reaches the crash handler (a model truncated during a reply).
bn_add_test(NAME test_engine_fault SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_engine_fault.c
            LIBS bn_infer LABELS cpu)
# The same through the real chat in a pty: terminal restored and the bus error explained.
bn_add_script_test(NAME test_model_truncated_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_model_truncated_cli.sh
                   LABELS cpu TIMEOUT 120)
# A random-weight model file at a published shape, to time `bitnet-chat -p` on it (not a test):
# make_bench_model TOKENIZER OUT.gguf [2b|llama3-8b] [seed].
bn_add_tool(NAME make_bench_model SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/make_bench_model.c LIBS bn_infer)
