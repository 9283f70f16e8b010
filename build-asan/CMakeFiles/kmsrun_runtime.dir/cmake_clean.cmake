file(REMOVE_RECURSE
  "CMakeFiles/kmsrun_runtime.dir/runtime/host.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/host.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_archive.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_archive.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_crypto.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_crypto.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_fs.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_fs.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_http.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_http.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_httpd.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_httpd.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_proc.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_proc.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_time.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/l_time.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/proc.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/proc.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/register.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/register.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/runtime/task.c.o"
  "CMakeFiles/kmsrun_runtime.dir/runtime/task.c.o.d"
  "CMakeFiles/kmsrun_runtime.dir/stdlib_embedded.c.o"
  "CMakeFiles/kmsrun_runtime.dir/stdlib_embedded.c.o.d"
  "libkmsrun_runtime.a"
  "libkmsrun_runtime.pdb"
  "stdlib_embedded.c"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/kmsrun_runtime.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
