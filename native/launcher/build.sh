#!/bin/sh
# Compile the `pyruntime` command (native/launcher/main.c says what it is).
#   native/launcher/build.sh OUTPUT PYTHON SCRIPT
# PYTHON: the interpreter to run the CLI with; SCRIPT: pyruntime/cli/scripts/pyruntime.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 OUTPUT PYTHON SCRIPT" >&2; exit 2; }
here=$(dirname "$0")
exec ${CC:-cc} -O2 -Wall -Wextra -Werror -o "$1" "$here"/*.c \
    -DPYRUNTIME_PYTHON="\"$2\"" -DPYRUNTIME_SCRIPT="\"$3\""
