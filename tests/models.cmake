# Model files: GGUF / safetensors readers, every published model form, convert, hostile files.
bn_add_test(NAME test_model_formats SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_formats.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_hostile SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_hostile.c
            LIBS bn_infer LABELS cpu)
