# GPU tests: CUDA kernels against the scalar references, the CUDA backend and sampler against
# the host, and the model families on the CUDA backend against the CPU backend. Label gpu; each
# exits 77 ("SKIP: no CUDA device") where there is no GPU, and a build without the CUDA backend
# lists them as skips. The GPU runs of the oracle tests sit in tests/oracle/.
set(G ${CMAKE_CURRENT_LIST_DIR})
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_kernels_cuda SOURCES ${G}/test_kernels_cuda.c LIBS bn_kernels LABELS gpu)
  bn_add_test(NAME test_backend_cuda SOURCES ${G}/test_backend_cuda.c ${BN_HELPERS}/forward_ref.c
              LIBS bn_infer LABELS gpu)
  bn_add_test(NAME test_sample_cuda SOURCES ${G}/test_sample_cuda.c LIBS bn_infer LABELS gpu)
  # the screened exact lm_head against the full one: kernels and the backend side by side
  bn_add_test(NAME test_screen_cuda SOURCES ${G}/test_screen_cuda.c LIBS bn_infer LABELS gpu TIMEOUT 600)
  # the backend's device-memory account (infer_memory) against its shapes and cudaMemGetInfo
  bn_add_test(NAME test_memory_cuda SOURCES ${G}/test_memory_cuda.c LIBS bn_infer LABELS gpu)
  # the prefill scratch plan against the buffers' lifetimes: no device needed, so label cpu
  bn_add_test(NAME test_prefill_plan SOURCES ${G}/test_prefill_plan.c LIBS bn_infer LABELS cpu)
else()
  bn_add_gpu_skip(test_kernels_cuda test_backend_cuda test_sample_cuda test_screen_cuda test_memory_cuda
                  test_prefill_plan)
endif()

# The family fixtures (tests/data/families) on the CUDA backend against the CPU backend (SiLU
# epilogue, no sub-norms, untied lm_head, 1bitLLM's head_dim 100), and random models at Falcon3's
# head_dim 256 and others no fixture has, with a head_dim the GPU refuses.
set(BN_FAMILIES_CUDA_TESTS test_families_cuda_llama3 test_families_cuda_falcon3
    test_families_cuda_falcon3_i2s test_families_cuda_onebit test_families_cuda_random)
if(BN_HAVE_CUDA)
  bn_add_tool(NAME test_families_cuda SOURCES ${G}/test_families_cuda.c LIBS bn_infer)
  add_test(NAME test_families_cuda_llama3 COMMAND test_families_cuda families/llama3)
  add_test(NAME test_families_cuda_falcon3 COMMAND test_families_cuda families/falcon3)
  add_test(NAME test_families_cuda_falcon3_i2s COMMAND test_families_cuda families/falcon3 i2s.gguf)
  add_test(NAME test_families_cuda_onebit COMMAND test_families_cuda families/onebit)
  add_test(NAME test_families_cuda_random COMMAND test_families_cuda random)
  set_tests_properties(${BN_FAMILIES_CUDA_TESTS} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
else()
  bn_add_gpu_skip(${BN_FAMILIES_CUDA_TESTS})
endif()

# The kernel lab (kernels/dev): built everywhere nvcc is, so that it cannot rot; run by hand on
# a GPU (./build/tests/dev_w2a8_gemv [version], ./build/tests/dev_w2a8_gemm).
# The persistent decode kernel (kernels/dev/decode_persistent.cu, a lab kernel: measured slower
# than the per-kernel chain, see kernels/dev/README.md). `dev_decode_persistent small` checks it
# against the CPU reference over the small shapes (GQA 1-8, head_dim 64-256, ragged sizes).
if(BN_HAVE_CUDA)
  add_executable(dev_w2a8_gemv ${CMAKE_SOURCE_DIR}/kernels/dev/w2a8_gemv.cu)
  target_link_libraries(dev_w2a8_gemv PRIVATE bn_kernels)
  add_executable(dev_w2a8_gemm ${CMAKE_SOURCE_DIR}/kernels/dev/w2a8_gemm.cu)
  target_link_libraries(dev_w2a8_gemm PRIVATE bn_kernels)
  # version 5 of the GEMM is warpgroup MMA (wgmma), an sm_90a feature: the lab runs on H100/H200
  set_target_properties(dev_w2a8_gemm PROPERTIES CUDA_ARCHITECTURES 90a)
  add_executable(dev_attn_decode ${CMAKE_SOURCE_DIR}/kernels/dev/attn_decode_lab.cu)
  target_include_directories(dev_attn_decode PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(dev_attn_decode PRIVATE bn_kernels)
  add_executable(dev_lm_head ${CMAKE_SOURCE_DIR}/kernels/dev/lm_head.cu)
  target_link_libraries(dev_lm_head PRIVATE bn_kernels)
  # device memory of the context's limits, a stream and graphs (kernels/dev/README.md, "Device memory")
  add_executable(dev_mem_probe ${CMAKE_SOURCE_DIR}/kernels/dev/mem_probe.cu)
  add_executable(dev_decode_persistent ${CMAKE_SOURCE_DIR}/kernels/dev/decode_persistent_lab.cu
                 ${CMAKE_SOURCE_DIR}/kernels/dev/decode_persistent.cu)
  target_include_directories(dev_decode_persistent PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_options(dev_decode_persistent PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  target_link_libraries(dev_decode_persistent PRIVATE bn_kernels)
  add_test(NAME test_decode_persistent_cuda COMMAND dev_decode_persistent small)
  set_tests_properties(test_decode_persistent_cuda PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
  # QKV + attention in one kernel (kernels/dev/qkv_attention.cuh, a lab kernel: measured slower than
  # the product's two kernels, kernels/dev/README.md "QKV + attention in one kernel"), by hand:
  # `dev_fuse check` against the product's kernels and a double-precision reference, `dev_fuse time`
  # both in 30 decode layers
  add_executable(dev_fuse ${CMAKE_SOURCE_DIR}/kernels/dev/fuse_lab.cu)
  target_include_directories(dev_fuse PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(dev_fuse PRIVATE bn_kernels)
else()
  bn_add_gpu_skip(test_decode_persistent_cuda)
endif()
