# The optional int8 lm_head (--lm-head int8): top-1 agreement with the f16 lm_head on real text
# with the demo model (tests/test_lm_head_int8.c), on the CPU reference and on the CUDA backend.
bn_add_test(NAME test_lm_head_int8 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_lm_head_int8.c
            LIBS bn_infer ARGS cpu LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_lm_head_int8_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_lm_head_int8.c
              LIBS bn_infer ARGS cuda LABELS gpu)
endif()
bn_add_script_test(NAME test_lm_head_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_lm_head_cli.sh LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_script_test(NAME test_lm_head_cli_cuda SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_lm_head_cli.sh
                     ARGS cuda LABELS gpu)
endif()
