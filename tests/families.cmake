# The BitNet model families (issue #14): Llama-style ternary models (Llama3-8B-1.58, Falcon3,
# Falcon-E) against transformers' own LlamaForCausalLM + BitLinear (tests/data/families, made by
# make_families.py there), and their chat formats, perplexity and loading rules.
bn_add_test(NAME test_forward_llama3 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/llama3 LABELS cpu)
bn_add_test(NAME test_forward_falcon3 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/falcon3 LABELS cpu)
bn_add_test(NAME test_families SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_families.c
            LIBS bn_app bn_infer LABELS cpu)
# The same Falcon3-style weights as bitnet.cpp / llama.cpp write them: GGUF arch "llama" with
# q/k rows permuted, as I2_S, TQ2_0, TQ1_0 and F16.
bn_add_test(NAME test_forward_falcon3_i2s SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/falcon3 i2s.gguf LABELS cpu)
foreach(form tq2_0 tq1_0 f16)
  bn_add_test(NAME test_forward_falcon3_${form} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
              LIBS bn_infer ARGS families/falcon3 ${form}.gguf f16-scales LABELS cpu)
endforeach()
# 1bitLLM bitnet_b1_58 style (SiLU with inner_attn_ln / ffn_layernorm, fp16 masters, tied,
# head_dim 100, intermediate 270) against its graph written out in make_families.py.
bn_add_test(NAME test_forward_onebit SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/onebit LABELS cpu)
bn_add_test(NAME test_forward_onebit_gguf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/onebit f16.gguf LABELS cpu)
# The same fixtures on the CUDA backend against the CPU backend (SiLU epilogue, no sub-norms,
# untied lm_head, 1bitLLM's head_dim 100), and random models at Falcon3's head_dim 256 and
# others no fixture has, with a head_dim the GPU refuses. Label gpu; exit 77 without a device.
set(BN_FAMILIES_CUDA_TESTS test_families_cuda_llama3 test_families_cuda_falcon3
    test_families_cuda_falcon3_i2s test_families_cuda_onebit test_families_cuda_random)
if(BN_HAVE_CUDA)
  bn_add_tool(NAME test_families_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_families_cuda.c LIBS bn_infer)
  add_test(NAME test_families_cuda_llama3 COMMAND test_families_cuda families/llama3)
  add_test(NAME test_families_cuda_falcon3 COMMAND test_families_cuda families/falcon3)
  add_test(NAME test_families_cuda_falcon3_i2s COMMAND test_families_cuda families/falcon3 i2s.gguf)
  add_test(NAME test_families_cuda_onebit COMMAND test_families_cuda families/onebit)
  add_test(NAME test_families_cuda_random COMMAND test_families_cuda random)
  set_tests_properties(${BN_FAMILIES_CUDA_TESTS} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
else()
  foreach(t ${BN_FAMILIES_CUDA_TESTS})
    add_test(NAME ${t} COMMAND sh -c "echo 'SKIP: built without the CUDA backend (no nvcc found or -DBITNET_CUDA=OFF)'; exit 77")
    set_tests_properties(${t} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77)
  endforeach()
endif()
