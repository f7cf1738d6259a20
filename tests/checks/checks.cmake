# Checks of the source tree and the built libraries rather than of behaviour: the layering rule
# (by grep over every file, and by the compiler refusing an include that skips a layer) and the
# independence of the scalar oracle from the fast paths, no environment read in the engine. Label cpu.
bn_add_script_test(NAME test_layers SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_layers.sh
                   ARGS ${CMAKE_SOURCE_DIR} LABELS cpu)
bn_add_script_test(NAME test_layers_build SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_layers_build.sh
                   ARGS ${CMAKE_BINARY_DIR} LABELS cpu)
bn_add_script_test(NAME test_oracle_independent SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_oracle.sh
                   ARGS $<TARGET_FILE:bn_kernels> LABELS cpu)
bn_add_script_test(NAME test_no_env SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_no_env.sh
                   ARGS ${CMAKE_SOURCE_DIR} LABELS cpu)
