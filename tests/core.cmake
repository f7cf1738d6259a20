# Core: the W2A8 layout helpers, the layering rule and the independence of the scalar oracle.
bn_add_test(NAME test_w2a8_layout SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_w2a8_layout.c
            LIBS bn_kernels LABELS cpu)
bn_add_script_test(NAME test_layers SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/check_layers.sh
                   ARGS ${CMAKE_SOURCE_DIR} LABELS cpu)
bn_add_script_test(NAME test_layers_build SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/check_layers_build.sh
                   ARGS ${CMAKE_BINARY_DIR} LABELS cpu)
bn_add_script_test(NAME test_oracle_independent SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/check_oracle.sh
                   ARGS $<TARGET_FILE:bn_kernels> LABELS cpu)
