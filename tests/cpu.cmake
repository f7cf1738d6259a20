# CPU kernels and the CPU forward pass (owner: cpu).
bn_add_test(NAME test_kernels_cpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels_cpu.c
            LIBS bn_kernels LABELS cpu)
bn_add_test(NAME test_forward_cpu
            SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_cpu.c ${CMAKE_CURRENT_SOURCE_DIR}/forward_ref.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_forward_hf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer LABELS cpu)
# Benchmark at the 2B-4T shapes (not a test): ./build/tests/bench_cpu [threads] [pp] [tg] [reps]
add_executable(bench_cpu ${CMAKE_CURRENT_SOURCE_DIR}/bench_cpu.c)
target_compile_options(bench_cpu PRIVATE ${BN_WARN})
target_include_directories(bench_cpu PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_cpu PRIVATE bn_infer)
if(BN_HAVE_CUDA)
  set_target_properties(bench_cpu PROPERTIES LINKER_LANGUAGE CUDA)
endif()
