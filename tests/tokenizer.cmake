# Tokenizer: the Llama 3 tokenizer files are committed as a .tar.xz (the JSON is 9 MB) and
# unpacked into the build tree at configure time.
set(BN_TOK_ARCHIVE ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer/llama3-tokenizer.tar.xz)
set(BN_TOK_DIR ${CMAKE_BINARY_DIR}/tokenizer-data)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${BN_TOK_ARCHIVE})
if(NOT EXISTS ${BN_TOK_DIR}/llama3/tokenizer.json
   OR ${BN_TOK_ARCHIVE} IS_NEWER_THAN ${BN_TOK_DIR}/llama3/tokenizer.json)
  file(REMOVE_RECURSE ${BN_TOK_DIR})
  file(ARCHIVE_EXTRACT INPUT ${BN_TOK_ARCHIVE} DESTINATION ${BN_TOK_DIR})
  file(TOUCH ${BN_TOK_DIR}/llama3/tokenizer.json)
endif()

bn_add_test(NAME test_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c
            LIBS bn_infer LABELS cpu ARGS ${BN_TOK_DIR}/llama3)
bn_add_test(NAME test_tokenizer_utf8 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_utf8.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_utf8 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_utf8.c LIBS bn_infer LABELS cpu)
bn_add_script_test(NAME test_tokenize_cli
                   SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenize_cli.sh
                   ARGS ${BN_TOK_DIR}/llama3 LABELS cpu)

# Encoding speed (not a test): bench_tokenizer [FILE] prints MB/s against baselines.
bn_add_tool(NAME bench_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_tokenizer.c LIBS bn_infer)
target_compile_definitions(bench_tokenizer PRIVATE BN_TOK_DIR="${BN_TOK_DIR}/llama3")
