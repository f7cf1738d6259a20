# Whole-program checks that cross areas.
bn_add_script_test(NAME test_fresh_account SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_fresh_account.sh
                   LABELS cpu)
