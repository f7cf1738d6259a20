# CPU kernels and the CPU forward pass.
bn_add_test(NAME test_kernels_cpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels_cpu.c
            LIBS bn_kernels LABELS cpu)
bn_add_test(NAME test_forward_cpu
            SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_cpu.c ${CMAKE_CURRENT_SOURCE_DIR}/forward_ref.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_forward_hf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer LABELS cpu)
# Benchmark at the 2B-4T shapes (not a test): ./build/tests/bench_cpu [threads] [pp] [tg] [reps]
bn_add_tool(NAME bench_cpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_cpu.c LIBS bn_infer)
# CPU kernel lab (not a test): checks fast kernels against _ref, then times them on one thread.
bn_add_tool(NAME cpu_kernels_lab SOURCES ${CMAKE_SOURCE_DIR}/kernels/dev/cpu_kernels_lab.c
            LIBS bn_kernels)
# The CPU weight store: huge-page copy vs in-place mapping, the int8 lm_head (infer/cpu_weights.h).
bn_add_test(NAME test_cpu_weights SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cpu_weights.c
            LIBS bn_infer LABELS cpu)
bn_add_script_test(NAME test_cpu_weights_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_cpu_weights_cli.sh LABELS cpu)
