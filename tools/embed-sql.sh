#!/bin/sh
# embed-sql.sh NAME FILE...: prints a C file defining
#   const struct migration NAME_migrations[] (terminated by {NULL, NULL})
# with each SQL file's base name and contents, in the order given.
set -eu
name=$1; shift
echo '#include "migrate.h"'
i=0
for f in "$@"; do
  printf 'static const char sql_%d[] = {' "$i"
  od -An -v -tu1 "$f" | tr -s ' \n' ',,' | sed 's/^,//; s/,$//'
  printf ',0};\n'
  i=$((i + 1))
done
printf 'const struct migration %s_migrations[] = {\n' "$name"
i=0
for f in "$@"; do
  printf '\t{"%s", sql_%d},\n' "$(basename "$f")" "$i"
  i=$((i + 1))
done
printf '\t{NULL, NULL},\n};\n'
