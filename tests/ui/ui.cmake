# UI tests: the real program in a private tmux server (lib.sh is the harness), over the scripted
# engine (bitnet-chat-fake) or a real small model; the start-up width probe in a pty; the man
# page against `--help`, /help and the README. The UI benchmarks beside them use the
# same harness and are not tests.
set(BN_UI_FAKE_DIR ${CMAKE_CURRENT_LIST_DIR})

# bitnet-chat-fake: the real UI + App over the scripted engine, for deterministic UI tests.
add_executable(bitnet-chat-fake ${BN_UI_FAKE_DIR}/fake_main.c ${BN_UI_FAKE_DIR}/fake_engine.c)
target_compile_options(bitnet-chat-fake PRIVATE ${BN_WARN})
target_include_directories(bitnet-chat-fake PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bitnet-chat-fake PRIVATE bn_ui bn_app)

bn_add_script_test(NAME test_ui_fake SCRIPT ${BN_UI_FAKE_DIR}/test_ui_fake.sh
                   ARGS $<TARGET_FILE:bitnet-chat-fake> LABELS ui TIMEOUT 240)
# Issue 15: keys never lost or misrouted, commands never run by accident (scripted engine).
bn_add_script_test(NAME test_ui_chat SCRIPT ${BN_UI_FAKE_DIR}/test_ui_chat.sh
                   ARGS $<TARGET_FILE:bitnet-chat-fake> LABELS ui TIMEOUT 240)
# The real program with a real small model.
bn_add_script_test(NAME test_ui_real SCRIPT ${BN_UI_FAKE_DIR}/test_ui_real.sh LABELS ui TIMEOUT 300)

# The start-up width probe against a terminal played by the test (a pty, no tmux).
find_program(BN_PYTHON3 python3)
if(BN_PYTHON3)
  add_test(NAME test_probe COMMAND ${BN_PYTHON3} ${BN_UI_FAKE_DIR}/test_probe.py $<TARGET_FILE:bitnet-chat-fake>)
  set_tests_properties(test_probe PROPERTIES LABELS ui TIMEOUT 120)
endif()

# The man page, `--help`, the chat's /help (printed by slash_help) and the README must agree.
bn_add_tool(NAME slash_help SOURCES ${BN_UI_FAKE_DIR}/slash_help.c ${BN_UI_FAKE_DIR}/fake_engine.c
            LIBS bn_app)
bn_add_script_test(NAME test_manpage SCRIPT ${BN_UI_FAKE_DIR}/test_manpage.sh
                   ARGS $<TARGET_FILE:slash_help> LABELS cpu)
