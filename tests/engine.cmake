# Engine area: sampler, chat template, event channel, engine thread, one-shot prompt.
# TSan: cmake -S . -B build-tsan -G Ninja -DBITNET_SANITIZE=thread && cmake --build build-tsan
#       ctest --test-dir build-tsan -R 'test_chan|test_engine'
bn_add_test(NAME test_sampler SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_sampler.c
            LIBS bn_infer LABELS cpu)
bn_add_test(NAME test_chan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_chan.c
            LIBS bn_infer LABELS cpu)
