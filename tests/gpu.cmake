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
if(BN_HAVE_CUDA)
  add_executable(dev_decode_persistent ${CMAKE_SOURCE_DIR}/kernels/dev/decode_persistent_lab.cu)
  target_link_libraries(dev_decode_persistent PRIVATE bn_kernels)
endif()
