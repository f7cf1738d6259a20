# The README's load-error examples are what the program prints (truncated copies of the demo).
bn_add_script_test(NAME test_readme_load_errors_cli
                   SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_readme_load_errors_cli.sh LABELS cpu)
