# A build without the CUDA backend still lists the GPU tests, as visible skips, so that
# `ctest` says what did not run rather than leaving them out silently.
if(NOT BN_HAVE_CUDA)
  foreach(t test_kernels_cuda test_backend_cuda test_sample_cuda test_demo_golden_cuda test_demo_golden_cli_cuda
            test_decode_persistent_cuda)
    add_test(NAME ${t} COMMAND sh -c "echo 'SKIP: built without the CUDA backend (no nvcc found or -DBITNET_CUDA=OFF)'; exit 77")
    set_tests_properties(${t} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77)
  endforeach()
endif()
