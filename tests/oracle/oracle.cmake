# Oracle tests: the whole forward pass against references made outside this program (Hugging
# Face transformers, the PyTorch run that trained the demo model), on the CPU and, with label
# gpu, on the CUDA backend. The scripts that made the fixtures sit here too (make_grid.py,
# write_kl_base.py) or beside their data under tests/data/.
set(O ${CMAKE_CURRENT_LIST_DIR})

# transformers' BitNet (tests/data/hf_ref) and the Llama-style families (tests/data/families, made
# by make_families.py there: Llama3-8B-1.58, Falcon3, 1bitLLM), as safetensors and as
# bitnet.cpp / llama.cpp write them (GGUF arch "llama", q/k rows permuted, I2_S, TQ2_0, TQ1_0, F16).
bn_add_test(NAME test_forward_hf SOURCES ${O}/test_forward_hf.c LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_forward_llama3 SOURCES ${O}/test_forward_hf.c
            LIBS bn_infer ARGS families/llama3 LABELS cpu)
bn_add_test(NAME test_forward_falcon3 SOURCES ${O}/test_forward_hf.c
            LIBS bn_infer ARGS families/falcon3 LABELS cpu)
bn_add_test(NAME test_forward_falcon3_i2s SOURCES ${O}/test_forward_hf.c
            LIBS bn_infer ARGS families/falcon3 i2s.gguf LABELS cpu)
foreach(form tq2_0 tq1_0 f16)
  bn_add_test(NAME test_forward_falcon3_${form} SOURCES ${O}/test_forward_hf.c
              LIBS bn_infer ARGS families/falcon3 ${form}.gguf f16-scales LABELS cpu)
endforeach()
# 1bitLLM bitnet_b1_58 style (SiLU with inner_attn_ln / ffn_layernorm, fp16 masters, tied,
# head_dim 100, intermediate 270) against its graph written out in make_families.py.
bn_add_test(NAME test_forward_onebit SOURCES ${O}/test_forward_hf.c
            LIBS bn_infer ARGS families/onebit LABELS cpu)
bn_add_test(NAME test_forward_onebit_gguf SOURCES ${O}/test_forward_hf.c
            LIBS bn_infer ARGS families/onebit f16.gguf LABELS cpu)

# The shipped demo model: assets/bitnet-demo.gguf against the PyTorch reference of its own
# training run, and greedy replies identical on every path (fast CPU, scalar reference, CUDA).
set(BN_DEMO_SRC ${O}/test_demo_golden.c ${BN_HELPERS}/forward_ref.c)
bn_add_test(NAME test_demo_golden SOURCES ${BN_DEMO_SRC} LIBS bn_infer ARGS fast LABELS cpu)
bn_add_test(NAME test_demo_golden_ref SOURCES ${BN_DEMO_SRC} LIBS bn_infer ARGS ref LABELS cpu slow)
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_demo_golden_cuda SOURCES ${BN_DEMO_SRC} LIBS bn_infer ARGS cuda LABELS gpu)
else()
  bn_add_gpu_skip(test_demo_golden_cuda)
endif()

# The grid oracle: 7 random BitNet models from make_grid.py (tests/data/grid) against
# transformers, through the engine.
set(BN_GRID_SRC ${O}/test_grid_oracle.c ${BN_HELPERS}/forward_ref.c)
bn_add_test(NAME test_grid_oracle SOURCES ${BN_GRID_SRC} LIBS bn_app bn_infer LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_grid_oracle_cuda SOURCES ${BN_GRID_SRC} LIBS bn_app bn_infer LABELS gpu)
  target_compile_definitions(test_grid_oracle_cuda PRIVATE GRID_CUDA=1)
else()
  bn_add_gpu_skip(test_grid_oracle_cuda)
endif()

# The optional int8 lm_head (--lm-head int8): top-1 agreement with the f16 lm_head on real text
# with the demo model, on the CPU reference and on the CUDA backend.
bn_add_test(NAME test_lm_head_int8 SOURCES ${O}/test_lm_head_int8.c LIBS bn_infer ARGS cpu LABELS cpu)
if(BN_HAVE_CUDA)
  bn_add_test(NAME test_lm_head_int8_cuda SOURCES ${O}/test_lm_head_int8.c
              LIBS bn_infer ARGS cuda LABELS gpu)
endif()
