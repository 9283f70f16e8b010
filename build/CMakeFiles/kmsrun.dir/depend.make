# Empty dependencies file for kmsrun.
# This may be replaced when dependencies are built.
