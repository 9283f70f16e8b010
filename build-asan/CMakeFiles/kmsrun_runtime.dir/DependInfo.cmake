
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/runtime/host.c" "CMakeFiles/kmsrun_runtime.dir/runtime/host.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/host.c.o.d"
  "/work/main/runtime/l_archive.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_archive.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_archive.c.o.d"
  "/work/main/runtime/l_crypto.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_crypto.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_crypto.c.o.d"
  "/work/main/runtime/l_fs.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_fs.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_fs.c.o.d"
  "/work/main/runtime/l_http.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_http.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_http.c.o.d"
  "/work/main/runtime/l_httpd.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_httpd.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_httpd.c.o.d"
  "/work/main/runtime/l_proc.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_proc.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_proc.c.o.d"
  "/work/main/runtime/l_time.c" "CMakeFiles/kmsrun_runtime.dir/runtime/l_time.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/l_time.c.o.d"
  "/work/main/runtime/proc.c" "CMakeFiles/kmsrun_runtime.dir/runtime/proc.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/proc.c.o.d"
  "/work/main/runtime/register.c" "CMakeFiles/kmsrun_runtime.dir/runtime/register.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/register.c.o.d"
  "/work/main/runtime/task.c" "CMakeFiles/kmsrun_runtime.dir/runtime/task.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/runtime/task.c.o.d"
  "/work/main/build-asan/stdlib_embedded.c" "CMakeFiles/kmsrun_runtime.dir/stdlib_embedded.c.o" "gcc" "CMakeFiles/kmsrun_runtime.dir/stdlib_embedded.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
