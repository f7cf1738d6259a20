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
# CPU kernel lab (not a test): checks fast kernels against _ref, then times them on one thread.
add_executable(cpu_kernels_lab ${CMAKE_SOURCE_DIR}/kernels/dev/cpu_kernels_lab.c)
target_compile_options(cpu_kernels_lab PRIVATE ${BN_WARN})
target_include_directories(cpu_kernels_lab PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(cpu_kernels_lab PRIVATE bn_kernels)
if(BN_HAVE_CUDA)
  set_target_properties(cpu_kernels_lab PROPERTIES LINKER_LANGUAGE CUDA)
endif()
