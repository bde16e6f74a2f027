#!/bin/sh
# embed-files.sh NAME FILE...: prints a C file defining
#   const struct web_file NAME_web[] (terminated by {NULL, NULL, 0})
# with each file's base name and bytes, so a service serves its pages and
# scripts with no files beside the binary (see services/common/web_assets.h).
set -eu
name=$1; shift
echo '#include "web_assets.h"'
i=0
for f in "$@"; do
  printf 'static const unsigned char web_%d[] = {' "$i"
  od -An -v -tu1 "$f" | tr -s ' \n' ',,' | sed 's/^,//; s/,$//'
  printf ',0};\n'
  i=$((i + 1))
done
printf 'const struct web_file %s_web[] = {\n' "$name"
i=0
for f in "$@"; do
  printf '\t{"%s", web_%d, sizeof(web_%d) - 1},\n' "$(basename "$f")" "$i" "$i"
  i=$((i + 1))
done
printf '\t{NULL, NULL, 0},\n};\n'
