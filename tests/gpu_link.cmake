# The CUDA build's bitnet-chat links no cuBLAS and runs without a GPU (label cpu: CI runs it).
if(BN_HAVE_CUDA)
  bn_add_script_test(NAME test_no_cublas_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_no_cublas_cli.sh LABELS cpu)
endif()
