# GPU area: CUDA kernels against the scalar references, and the CUDA backend against a host
# forward pass. Label gpu; each test exits 77 ("SKIP: no CUDA device") where there is no GPU.
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_kernels_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels_cuda.c
              LIBS bn_kernels LABELS gpu)
  bn_add_test(NAME test_backend_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_cuda.c
              LIBS bn_infer LABELS gpu)
endif()
