# Agreement with Hugging Face transformers: config.json spellings, the KL-divergence comparison
# and the grid oracle (fixtures and the scripts that made them under tests/oracle/).
bn_add_test(NAME test_hf_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_hf_config.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_grid_oracle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_grid_oracle.c
                                          ${CMAKE_CURRENT_SOURCE_DIR}/forward_ref.c
            LIBS bn_app bn_infer LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_grid_oracle_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_grid_oracle.c
                                                 ${CMAKE_CURRENT_SOURCE_DIR}/forward_ref.c
              LIBS bn_app bn_infer LABELS gpu)
  target_compile_definitions(test_grid_oracle_cuda PRIVATE GRID_CUDA=1)
else()
  add_test(NAME test_grid_oracle_cuda COMMAND sh -c "echo 'SKIP: built without the CUDA backend (no nvcc found or -DBITNET_CUDA=OFF)'; exit 77")
  set_tests_properties(test_grid_oracle_cuda PROPERTIES LABELS gpu SKIP_RETURN_CODE 77)
endif()
bn_add_script_test(NAME test_kl_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_kl_cli.sh LABELS cpu)
