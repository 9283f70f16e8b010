file(REMOVE_RECURSE
  "libkmsrun_runtime.a"
)
