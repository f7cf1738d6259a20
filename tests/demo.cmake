# The shipped demo model: assets/bitnet-demo.gguf against the PyTorch reference of
# its own training run, and greedy replies identical on every path (tests/test_demo_golden.c).
set(BN_DEMO_SRC ${CMAKE_CURRENT_SOURCE_DIR}/test_demo_golden.c ${CMAKE_CURRENT_SOURCE_DIR}/forward_ref.c)
bn_add_test(NAME test_demo_golden SOURCES ${BN_DEMO_SRC} LIBS bn_infer ARGS fast LABELS cpu)
bn_add_test(NAME test_demo_golden_ref SOURCES ${BN_DEMO_SRC} LIBS bn_infer ARGS ref LABELS cpu slow)
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_demo_golden_cuda SOURCES ${BN_DEMO_SRC} LIBS bn_infer ARGS cuda LABELS gpu)
endif()
# The same through `bitnet-chat -p` (chat template, engine thread, UTF-8 streaming, CLI).
bn_add_script_test(NAME test_demo_golden_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_demo_golden_cli.sh
                   ARGS cpu LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_script_test(NAME test_demo_golden_cli_cuda SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_demo_golden_cli.sh
                     ARGS cuda LABELS gpu)
endif()
