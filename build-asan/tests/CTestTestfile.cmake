# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build-asan/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(lua/test_task "/work/main/build-asan/kmsrun" "test" "/work/main/tests/lua/test_task.lua")
set_tests_properties(lua/test_task PROPERTIES  ENVIRONMENT "KMSRUN=/work/main/build-asan/kmsrun;KMSRUN_SOURCE_DIR=/work/main" LABELS "lua" TIMEOUT "300" WORKING_DIRECTORY "/work/main/tests/lua" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;17;add_test;/work/main/tests/CMakeLists.txt;0;")
