# Command-line tests: shell scripts that run the real bitnet-chat (BN_BIN) the way a user or a
# script would, on the small fixture models; lib.sh is their shared setup. Label cpu, or gpu for
# the CUDA runs.
set(C ${CMAKE_CURRENT_LIST_DIR})

# One-shot prompt and perplexity; scripts (stdin, -f, --format json); -p when its output goes
# away or it is told to stop; a model truncated during a reply, in a pty.
bn_add_script_test(NAME test_prompt_cli SCRIPT ${C}/test_prompt_cli.sh LABELS cpu)
bn_add_script_test(NAME test_chat_cli SCRIPT ${C}/test_chat_cli.sh LABELS cpu)
bn_add_script_test(NAME test_prompt_stop_cli SCRIPT ${C}/test_prompt_stop_cli.sh LABELS cpu TIMEOUT 120)
bn_add_script_test(NAME test_model_truncated_cli SCRIPT ${C}/test_model_truncated_cli.sh
                   LABELS cpu TIMEOUT 120)
# Bad and edge values on the command line.
bn_add_script_test(NAME test_args_cli SCRIPT ${C}/test_args_cli.sh LABELS cpu TIMEOUT 120)
# On a fresh account the default history works out of the box.
bn_add_script_test(NAME test_fresh_account SCRIPT ${C}/test_fresh_account.sh LABELS cpu)

# Model files: convert, outputs convert must not replace, paths that are not plain files, the
# README's load-error examples, tokenize.
bn_add_script_test(NAME test_model_convert_cli SCRIPT ${C}/test_model_convert_cli.sh LABELS cpu)
bn_add_script_test(NAME test_convert_outputs_cli SCRIPT ${C}/test_convert_outputs_cli.sh
                   LABELS cpu TIMEOUT 120)
bn_add_script_test(NAME test_model_paths_cli SCRIPT ${C}/test_model_paths_cli.sh LABELS cpu TIMEOUT 120)
bn_add_script_test(NAME test_readme_load_errors_cli SCRIPT ${C}/test_readme_load_errors_cli.sh LABELS cpu)
bn_add_script_test(NAME test_tokenize_cli SCRIPT ${C}/test_tokenize_cli.sh
                   ARGS ${BN_TOK_DIR}/llama3 LABELS cpu)

# History: the history command line; odd output and input files (hold_db_lock holds a SQLite
# write lock, as another program would); SIGKILL of the real program mid-reply.
bn_add_script_test(NAME test_store_cli SCRIPT ${C}/test_store_cli.sh LABELS cpu TIMEOUT 120)
bn_add_tool(NAME hold_db_lock SOURCES ${BN_HELPERS}/hold_db_lock.c LIBS PkgConfig::SQLITE3)
bn_add_script_test(NAME test_odd_files_cli SCRIPT ${C}/test_odd_files_cli.sh
                   LABELS cpu TIMEOUT 120 ARGS $<TARGET_FILE:hold_db_lock>)
bn_add_script_test(NAME test_store_kill_cli SCRIPT ${C}/test_store_kill_cli.sh LABELS cpu TIMEOUT 180)

# Backends and model paths: the CPU weight store, the int8 lm_head, the KL-divergence comparison,
# the demo model's golden replies through `bitnet-chat -p` (chat template, engine thread, UTF-8
# streaming).
bn_add_script_test(NAME test_cpu_weights_cli SCRIPT ${C}/test_cpu_weights_cli.sh LABELS cpu)
bn_add_script_test(NAME test_lm_head_cli SCRIPT ${C}/test_lm_head_cli.sh LABELS cpu)
bn_add_script_test(NAME test_kl_cli SCRIPT ${C}/test_kl_cli.sh LABELS cpu)
bn_add_script_test(NAME test_demo_golden_cli SCRIPT ${C}/test_demo_golden_cli.sh ARGS cpu LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_script_test(NAME test_lm_head_cli_cuda SCRIPT ${C}/test_lm_head_cli.sh ARGS cuda LABELS gpu)
  bn_add_script_test(NAME test_demo_golden_cli_cuda SCRIPT ${C}/test_demo_golden_cli.sh
                     ARGS cuda LABELS gpu)
  # The CUDA build's bitnet-chat links no cuBLAS and runs without a GPU (label cpu: CI runs it).
  bn_add_script_test(NAME test_no_cublas_cli SCRIPT ${C}/test_no_cublas_cli.sh LABELS cpu)
else()
  bn_add_gpu_skip(test_demo_golden_cli_cuda)
endif()
