# Store: SQLite history, the recorder, exports, the history command line.
bn_add_test(NAME test_store SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c
            LIBS bn_app LABELS cpu TIMEOUT 120)
