# Unit tests: one program per module of kernels/, infer/, app/ and ui/, named after the module,
# run without a terminal. Label cpu.
set(U ${CMAKE_CURRENT_LIST_DIR})

# ---- kernels/ -----------------------------------------------------------------------------------
bn_add_test(NAME test_w2a8_layout SOURCES ${U}/test_w2a8_layout.c LIBS bn_kernels LABELS cpu)
bn_add_test(NAME test_kernels_cpu SOURCES ${U}/test_kernels_cpu.c LIBS bn_kernels LABELS cpu)

# ---- infer/: tokenizer, text, sampler, channel, engine thread -----------------------------------
bn_add_test(NAME test_tokenizer SOURCES ${U}/test_tokenizer.c
            LIBS bn_infer LABELS cpu ARGS ${BN_TOK_DIR}/llama3)
bn_add_test(NAME test_tokenizer_utf8 SOURCES ${U}/test_tokenizer_utf8.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_utf8 SOURCES ${U}/test_utf8.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_chat_template SOURCES ${U}/test_chat_template.c
            LIBS bn_infer LABELS cpu ARGS ${BN_TOK_DIR}/llama3)
bn_add_test(NAME test_sampler SOURCES ${U}/test_sampler.c LIBS bn_infer LABELS cpu)
# TSan: cmake -S . -B build-tsan -G Ninja -DBITNET_SANITIZE=thread && cmake --build build-tsan
#       ctest --test-dir build-tsan -R 'test_chan|test_engine'
bn_add_test(NAME test_chan SOURCES ${U}/test_chan.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_engine SOURCES ${U}/test_engine.c
            LIBS bn_infer LABELS cpu ARGS ${BN_TOK_DIR}/llama3)
# A fault in the engine thread reaches the crash handler (a model truncated during a reply).
bn_add_test(NAME test_engine_fault SOURCES ${U}/test_engine_fault.c LIBS bn_infer LABELS cpu)

# ---- infer/: model files (GGUF / safetensors readers, every published form, convert) ------------
bn_add_test(NAME test_model_formats SOURCES ${U}/test_model_formats.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_hostile SOURCES ${U}/test_model_hostile.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_convert SOURCES ${U}/test_model_convert.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_quant SOURCES ${U}/test_model_quant.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_gguf SOURCES ${U}/test_model_gguf.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_infer SOURCES ${U}/test_model_infer.c LIBS bn_infer LABELS cpu)
# Loader validations: unusable tokenizers, special ids, non-finite weights, overlapping
# safetensors, message figures (each refused at load with the file named).
bn_add_test(NAME test_model_validate SOURCES ${U}/test_model_validate.c
            LIBS bn_infer PkgConfig::JANSSON LABELS cpu)
add_dependencies(test_model_validate bitnet-chat) # its convert cases run the program
# An interrupted GGUF write (infer/gguf_write.c) leaves no partial file.
bn_add_test(NAME test_gguf_write_signal SOURCES ${U}/test_gguf_write_signal.c LIBS bn_infer LABELS cpu)
# config.json spellings of Hugging Face models.
bn_add_test(NAME test_hf_config SOURCES ${U}/test_hf_config.c LIBS bn_infer LABELS cpu)
# The BitNet model families (issue #14): chat formats, perplexity and loading rules.
bn_add_test(NAME test_families SOURCES ${U}/test_families.c LIBS bn_app bn_infer LABELS cpu)

# ---- infer/: CPU backend ------------------------------------------------------------------------
# The fast CPU forward against the scalar reference forward (helpers/forward_ref.c).
bn_add_test(NAME test_forward_cpu SOURCES ${U}/test_forward_cpu.c ${BN_HELPERS}/forward_ref.c
            LIBS bn_infer LABELS cpu)
# The CPU weight store: huge-page copy vs in-place mapping, the int8 lm_head (infer/cpu_weights.h).
bn_add_test(NAME test_cpu_weights SOURCES ${U}/test_cpu_weights.c LIBS bn_infer LABELS cpu)
# The screened exact lm_head (infer/backend_cpu.c, kernels/cpu/cpu_screen.c): the bound on every
# row of every step, the same tokens as the whole f16 head, hostile heads.
bn_add_test(NAME test_lm_screen SOURCES ${U}/test_lm_screen.c LIBS bn_infer LABELS cpu TIMEOUT 600)
# Context length limits of the CPU backend (infer/backend_cpu.c).
bn_add_test(NAME test_backend_cpu_ctx SOURCES ${U}/test_backend_cpu_ctx.c LIBS bn_infer LABELS cpu)

# ---- app/ ---------------------------------------------------------------------------------------
bn_add_test(NAME test_perplexity SOURCES ${U}/test_perplexity.c LIBS bn_app LABELS cpu)
# SQLite history, the recorder, exports.
bn_add_test(NAME test_store SOURCES ${U}/test_store.c LIBS bn_app LABELS cpu TIMEOUT 120)
# SIGKILL mid-reply: a helper program streams through the recorder and is killed.
bn_add_tool(NAME store_kill_child SOURCES ${BN_HELPERS}/store_kill_child.c LIBS bn_app)
bn_add_test(NAME test_store_kill SOURCES ${U}/test_store_kill.c
            LIBS bn_app LABELS cpu TIMEOUT 120 ARGS $<TARGET_FILE:store_kill_child>)
add_dependencies(test_store_kill store_kill_child)
# The terminal-safe text writer used by --show, --search, --export and -p on a terminal.
bn_add_test(NAME test_termsafe SOURCES ${U}/test_termsafe.c LIBS bn_app LABELS cpu)
# Slash-command parsing and effects, no terminal (over the scripted engine of tests/ui/).
bn_add_test(NAME test_commands SOURCES ${U}/test_commands.c ${CMAKE_CURRENT_SOURCE_DIR}/ui/fake_engine.c
            LIBS bn_app LABELS cpu)
# Command-line parsing: every option's value, range message and mode, in one process.
bn_add_test(NAME test_cli SOURCES ${U}/test_cli.c LIBS bn_app LABELS cpu)

# ---- ui/ (the parts that need no terminal) ------------------------------------------------------
bn_add_test(NAME test_textwidth
            SOURCES ${U}/test_textwidth.c ${CMAKE_SOURCE_DIR}/ui/textwidth.c ${CMAKE_SOURCE_DIR}/infer/utf8.c
            LABELS cpu)
bn_add_test(NAME test_keys SOURCES ${U}/test_keys.c ${CMAKE_SOURCE_DIR}/ui/keys.c LABELS cpu)
