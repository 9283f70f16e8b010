file(REMOVE_RECURSE
  "CMakeFiles/kmsrun.dir/runtime/main.c.o"
  "CMakeFiles/kmsrun.dir/runtime/main.c.o.d"
  "kmsrun"
  "kmsrun.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/kmsrun.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
