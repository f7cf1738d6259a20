# Agreement with Hugging Face transformers: config.json spellings, the KL-divergence comparison
# and the grid oracle (fixtures and the scripts that made them under tests/oracle/).
bn_add_test(NAME test_hf_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_hf_config.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_grid_oracle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_grid_oracle.c
            LIBS bn_app bn_infer LABELS cpu)
