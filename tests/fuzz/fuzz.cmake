# Fuzzing (label fuzz): libFuzzer targets over the readers of untrusted input, and a short
# smoke run of each (smoke.sh) that skips without a fuzz build.
# -DBITNET_FUZZ=ON (with -DCMAKE_C_COMPILER=clang) builds libFuzzer targets for the GGUF reader
# (+ the whole loader), the safetensors reader, tokenizer.json, the whole Hugging Face folder
# load (fuzz_hf_folder) and the chat-history text paths (fuzz_history_text). Their own copy of the reader
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
  # The chat-history text paths (recorder, store, exports, search, terminal-safe output).
  add_library(bn_fuzz_history STATIC
    ${CMAKE_SOURCE_DIR}/app/history.c ${CMAKE_SOURCE_DIR}/app/store.c
    ${CMAKE_SOURCE_DIR}/app/store_export.c ${CMAKE_SOURCE_DIR}/app/termsafe.c
    ${CMAKE_SOURCE_DIR}/app/paths.c)
  target_include_directories(bn_fuzz_history PUBLIC ${CMAKE_SOURCE_DIR})
  target_compile_options(bn_fuzz_history PRIVATE -g -O1 -fsanitize=fuzzer-no-link,address,undefined
                         -fno-sanitize-recover=undefined)
  target_link_libraries(bn_fuzz_history PUBLIC bn_fuzz_core PkgConfig::SQLITE3)
  foreach(t gguf safetensors tokenizer_json hf_folder history_text)
    add_executable(fuzz_${t} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${t}.c)
    target_include_directories(fuzz_${t} PRIVATE ${CMAKE_SOURCE_DIR})
    target_compile_options(fuzz_${t} PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    if(t STREQUAL "history_text")
      target_link_libraries(fuzz_${t} PRIVATE bn_fuzz_history)
    else()
      target_link_libraries(fuzz_${t} PRIVATE bn_fuzz_core)
    endif()
  endforeach()
endif()
bn_add_script_test(NAME fuzz_smoke SCRIPT ${CMAKE_CURRENT_LIST_DIR}/smoke.sh LABELS fuzz
                   TIMEOUT 300)
