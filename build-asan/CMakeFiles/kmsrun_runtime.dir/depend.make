# Empty dependencies file for kmsrun_runtime.
# This may be replaced when dependencies are built.
