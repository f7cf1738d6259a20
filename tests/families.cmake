# The BitNet model families (issue #14): Llama-style ternary models (Llama3-8B-1.58, Falcon3,
# Falcon-E) against transformers' own LlamaForCausalLM + BitLinear (tests/data/families, made by
# make_families.py there), and their chat formats, perplexity and loading rules.
bn_add_test(NAME test_forward_llama3 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/llama3 LABELS cpu)
bn_add_test(NAME test_forward_falcon3 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_forward_hf.c
            LIBS bn_infer ARGS families/falcon3 LABELS cpu)
bn_add_test(NAME test_families SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_families.c
            LIBS bn_app bn_infer LABELS cpu)
