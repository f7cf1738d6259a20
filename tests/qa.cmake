# QA: hostile input and odd uses of the non-interactive program, through the real binary.
bn_add_script_test(NAME test_qa_convert_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_convert_cli.sh
                   LABELS cpu TIMEOUT 120)
bn_add_script_test(NAME test_qa_prompt_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_prompt_cli.sh
                   LABELS cpu TIMEOUT 120)
# qa_lock_db: holds a SQLite write lock, as another program would (test_qa_files_cli).
bn_add_tool(NAME qa_lock_db SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/qa_lock_db.c LIBS PkgConfig::SQLITE3)
bn_add_script_test(NAME test_qa_files_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_files_cli.sh
                   LABELS cpu TIMEOUT 120 ARGS $<TARGET_FILE:qa_lock_db>)
bn_add_script_test(NAME test_qa_args_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_args_cli.sh
                   LABELS cpu TIMEOUT 120)
bn_add_test(NAME test_qa_convert_signal SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_convert_signal.c
            LIBS bn_infer LABELS cpu)
bn_add_script_test(NAME test_qa_model_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_model_cli.sh
                   LABELS cpu TIMEOUT 120)
bn_add_test(NAME test_qa_ctx SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_qa_ctx.c
            LIBS bn_infer LABELS cpu)
