# Store: SQLite history, the recorder, exports, the history command line.
bn_add_test(NAME test_store SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c
            LIBS bn_app LABELS cpu TIMEOUT 120)

# SIGKILL mid-reply: a helper program streams through the recorder and is killed.
bn_add_tool(NAME store_kill_child SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/store_kill_child.c LIBS bn_app)
bn_add_test(NAME test_store_kill SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store_kill.c
            LIBS bn_app LABELS cpu TIMEOUT 120 ARGS $<TARGET_FILE:store_kill_child>)
add_dependencies(test_store_kill store_kill_child)

# The history command line through the real binary.
bn_add_script_test(NAME test_store_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_store_cli.sh
                   LABELS cpu TIMEOUT 120)

# SIGKILL of the real program mid-reply (skips while -p or a default model is missing).
bn_add_script_test(NAME test_store_kill_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_store_kill_cli.sh
                   LABELS cpu TIMEOUT 180)

# The terminal-safe text writer used by --show, --search, --export and -p on a terminal.
bn_add_test(NAME test_termsafe SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_termsafe.c
            LIBS bn_app LABELS cpu)
