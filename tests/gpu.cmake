# GPU area: CUDA kernels against the scalar references, and the CUDA backend against a host
# forward pass. Label gpu; each test exits 77 ("SKIP: no CUDA device") where there is no GPU.
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_kernels_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels_cuda.c
              LIBS bn_kernels LABELS gpu)
  bn_add_test(NAME test_backend_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_cuda.c
              LIBS bn_infer LABELS gpu)
  bn_add_test(NAME test_sample_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_sample_cuda.c
              LIBS bn_infer LABELS gpu)
endif()

# The kernel lab (kernels/dev): built everywhere nvcc is, so that it cannot rot; run by hand on
# a GPU (./dev_w2a8_gemv [version]).
if(BN_HAVE_CUDA)
  add_executable(dev_w2a8_gemv ${CMAKE_SOURCE_DIR}/kernels/dev/w2a8_gemv.cu)
  target_link_libraries(dev_w2a8_gemv PRIVATE bn_kernels)
endif()
if(BN_HAVE_CUDA)
  add_executable(dev_w2a8_gemm ${CMAKE_SOURCE_DIR}/kernels/dev/w2a8_gemm.cu)
  target_link_libraries(dev_w2a8_gemm PRIVATE bn_kernels)
endif()
# The persistent decode kernel (kernels/dev/decode_persistent.cu, a lab kernel: measured slower
# than the per-kernel chain, see kernels/dev/README.md). `dev_decode_persistent small` checks it
# against the CPU reference over the small shapes (GQA 1-8, head_dim 64-256, ragged sizes).
if(BN_HAVE_CUDA)
  add_executable(dev_decode_persistent ${CMAKE_SOURCE_DIR}/kernels/dev/decode_persistent_lab.cu
                 ${CMAKE_SOURCE_DIR}/kernels/dev/decode_persistent.cu)
  target_include_directories(dev_decode_persistent PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_options(dev_decode_persistent PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  target_link_libraries(dev_decode_persistent PRIVATE bn_kernels)
  add_test(NAME test_decode_persistent_cuda COMMAND dev_decode_persistent small)
  set_tests_properties(test_decode_persistent_cuda PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
endif()
