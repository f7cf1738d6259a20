# Model files: GGUF / safetensors readers, every published model form, convert, hostile files.
bn_add_test(NAME test_model_formats SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_formats.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_hostile SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_hostile.c
            LIBS bn_infer LABELS cpu)

# ---- fuzzing ------------------------------------------------------------------------------------
# -DBITNET_FUZZ=ON (with -DCMAKE_C_COMPILER=clang) builds libFuzzer targets for the GGUF reader
# (+ the whole loader), the safetensors reader and tokenizer.json. Their own copy of the reader
# sources is compiled with coverage instrumentation so that the fuzzer sees inside them.
if(BITNET_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "BITNET_FUZZ needs clang: configure with -DCMAKE_C_COMPILER=clang")
  endif()
  file(GLOB BN_FUZZ_TOKENIZER_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/infer/tokenizer*.c
       ${CMAKE_SOURCE_DIR}/infer/unicode*.c ${CMAKE_SOURCE_DIR}/infer/utf8*.c)
  add_library(bn_fuzz_core STATIC
    ${CMAKE_SOURCE_DIR}/infer/gguf.c ${CMAKE_SOURCE_DIR}/infer/safetensors.c
    ${CMAKE_SOURCE_DIR}/infer/model_quant.c ${CMAKE_SOURCE_DIR}/infer/model_load.c
    ${CMAKE_SOURCE_DIR}/infer/model.c ${CMAKE_SOURCE_DIR}/infer/err.c ${CMAKE_SOURCE_DIR}/infer/chat_template.c
    ${CMAKE_SOURCE_DIR}/kernels/w2a8_ref.c ${BN_FUZZ_TOKENIZER_SRC})
  target_include_directories(bn_fuzz_core PUBLIC ${CMAKE_SOURCE_DIR})
  target_compile_options(bn_fuzz_core PRIVATE -g -O1 -fsanitize=fuzzer-no-link,address,undefined
                         -fno-sanitize-recover=undefined)
  target_link_libraries(bn_fuzz_core PUBLIC PkgConfig::JANSSON PkgConfig::PCRE2 Threads::Threads m)
  foreach(t gguf safetensors tokenizer_json)
    add_executable(fuzz_${t} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_${t}.c)
    target_include_directories(fuzz_${t} PRIVATE ${CMAKE_SOURCE_DIR})
    target_compile_options(fuzz_${t} PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${t} PRIVATE bn_fuzz_core)
  endforeach()
endif()
bn_add_script_test(NAME fuzz_smoke SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/smoke.sh LABELS fuzz
                   TIMEOUT 300)
bn_add_test(NAME test_model_convert SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_convert.c
            LIBS bn_infer LABELS cpu)
bn_add_script_test(NAME test_model_convert_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_model_convert_cli.sh
                   LABELS cpu)
bn_add_test(NAME test_model_quant SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_quant.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_gguf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_gguf.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_model_infer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_infer.c
            LIBS bn_infer LABELS cpu)
