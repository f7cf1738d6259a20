# The full-screen UI: display width and wrapping, slash commands, the man page, tmux tests.
bn_add_test(NAME test_textwidth
            SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_textwidth.c ${CMAKE_SOURCE_DIR}/ui/textwidth.c
                    ${CMAKE_SOURCE_DIR}/infer/utf8.c
            LABELS cpu)

set(BN_UI_FAKE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/ui)

# bitnet-chat-fake: the real UI + App over the scripted engine, for deterministic UI tests.
add_executable(bitnet-chat-fake ${BN_UI_FAKE_DIR}/fake_main.c ${BN_UI_FAKE_DIR}/fake_engine.c)
target_compile_options(bitnet-chat-fake PRIVATE ${BN_WARN})
target_include_directories(bitnet-chat-fake PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bitnet-chat-fake PRIVATE bn_ui bn_app)

bn_add_script_test(NAME test_ui_fake SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/ui/test_ui_fake.sh
                   ARGS $<TARGET_FILE:bitnet-chat-fake> LABELS ui TIMEOUT 240)

# The start-up width probe against a terminal played by the test (a pty, no tmux).
find_program(BN_PYTHON3 python3)
if(BN_PYTHON3)
  add_test(NAME test_probe COMMAND ${BN_PYTHON3} ${BN_UI_FAKE_DIR}/test_probe.py $<TARGET_FILE:bitnet-chat-fake>)
  set_tests_properties(test_probe PROPERTIES LABELS ui TIMEOUT 120)
endif()

# The man page, `--help`, the chat's /help and the README must agree, both ways.
bn_add_tool(NAME slash_help SOURCES ${BN_UI_FAKE_DIR}/slash_help.c ${BN_UI_FAKE_DIR}/fake_engine.c
            LIBS bn_app)
bn_add_script_test(NAME test_manpage SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/ui/test_manpage.sh
                   ARGS $<TARGET_FILE:slash_help> LABELS cpu)

# Slash-command parsing and effects, no terminal (over the scripted engine).
bn_add_test(NAME test_commands
            SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_commands.c ${BN_UI_FAKE_DIR}/fake_engine.c
            LIBS bn_app LABELS cpu)

# Command-line parsing: every option's value, range message and mode, in one process.
bn_add_test(NAME test_cli SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.c LIBS bn_app LABELS cpu)

# The real program with a real small model.
bn_add_script_test(NAME test_ui_real SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/ui/test_ui_real.sh
                   LABELS ui TIMEOUT 300)

bn_add_test(NAME test_keys SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_keys.c ${CMAKE_SOURCE_DIR}/ui/keys.c
            LABELS cpu)

# Issue 15: keys never lost or misrouted, commands never run by accident (scripted engine).
bn_add_script_test(NAME test_ui_chat SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/ui/test_ui_chat.sh
                   ARGS $<TARGET_FILE:bitnet-chat-fake> LABELS ui TIMEOUT 240)

# Issue 15: scripts: the prompt from stdin or a file, --format json for the history listings.
bn_add_script_test(NAME test_chat_cli SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/test_chat_cli.sh LABELS cpu)
