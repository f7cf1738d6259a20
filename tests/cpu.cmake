# CPU kernels and the CPU forward pass (owner: cpu).
bn_add_test(NAME test_kernels_cpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels_cpu.c
            LIBS bn_kernels LABELS cpu)
bn_add_test(NAME test_forward_cpu
            SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_cpu.c ${CMAKE_CURRENT_SOURCE_DIR}/forward_ref.c
                    ${CMAKE_CURRENT_SOURCE_DIR}/cpu_link_stubs.c
            LIBS bn_infer LABELS cpu)
