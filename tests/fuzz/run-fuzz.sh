#!/bin/sh
# run-fuzz.sh [SECONDS]: builds every tests/fuzz/fuzz_*.c with libFuzzer,
# ASan and UBSan, and runs each for SECONDS (default 30). Fails on the first
# crash, leak or sanitizer report; the reproducer is left in
# build/fuzz/artifacts/.
#
# A target names the services/common sources it needs on a line
#   fuzz-sources: services/common/envelope.c services/common/util.c
# (default: all of services/common). The generated protobuf code for every
# proto/trygg/*.proto is always linked. Each target's corpus lives in
# tests/fuzz/corpus-<name>/ (git-ignored) and grows across runs; when it is
# empty it is seeded from tests/fuzz/seeds/<name>/ if that exists, and from
# the target's own seed mode if its source has one (built with
# -DTRYGG_FUZZ_SEEDS, it writes seeds into the directory given as argv[1]).
set -eu

SECONDS_PER_TARGET=${1:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/fuzz
CC=${FUZZ_CC:-clang}

command -v "$CC" >/dev/null || { echo "run-fuzz.sh: $CC not found (apt-get install clang)"; exit 1; }
command -v protoc-c >/dev/null || { echo "run-fuzz.sh: protoc-c not found"; exit 1; }

mkdir -p "$OUT/gen" "$OUT/artifacts"
for p in proto/trygg/*.proto; do
	protoc-c --proto_path=proto --c_out="$OUT/gen" "$p"
done

PKGS="libuv libprotobuf-c libcrypto"
for p in libpq libmicrohttpd jansson libcurl; do
	pkg-config --exists "$p" 2>/dev/null && PKGS="$PKGS $p"
done
# pkg-config output is word-split on purpose below.
PKG_CFLAGS="$(pkg-config --cflags $PKGS) -I/usr/include/postgresql"
PKG_LIBS="$(pkg-config --libs $PKGS) -lnng -lpthread -lm"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iservices/common -Iservices -I$OUT/gen"
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"

status=0
found=0
for src in ${FUZZ_ONLY:-tests/fuzz/fuzz_*.c}; do
	[ -e "$src" ] || continue
	found=1
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	bin="$OUT/fuzz_$name"
	corpus="tests/fuzz/corpus-$name"

	sources=$(sed -n 's/.*fuzz-sources:[[:space:]]*//p' "$src" | head -n 1)
	[ -n "$sources" ] || sources=$(ls services/common/*.c)

	echo "== fuzz_$name: building"
	# shellcheck disable=SC2086
	$CC $CFLAGS $PKG_CFLAGS $SAN "$src" $sources "$OUT"/gen/trygg/*.pb-c.c $PKG_LIBS -o "$bin"

	mkdir -p "$corpus"
	if [ -z "$(ls -A "$corpus")" ]; then
		if [ -d "tests/fuzz/seeds/$name" ]; then
			cp "tests/fuzz/seeds/$name"/* "$corpus"/ 2>/dev/null || true
		fi
		if grep -q TRYGG_FUZZ_SEEDS "$src"; then
			# shellcheck disable=SC2086
			$CC $CFLAGS $PKG_CFLAGS -DTRYGG_FUZZ_SEEDS "$src" $sources \
			    "$OUT"/gen/trygg/*.pb-c.c $PKG_LIBS -o "$OUT/seeds_$name"
			"$OUT/seeds_$name" "$corpus"
		fi
		echo "== fuzz_$name: seeded $corpus with $(ls "$corpus" | wc -l) inputs"
	fi

	echo "== fuzz_$name: running for ${SECONDS_PER_TARGET}s"
	log="$OUT/fuzz_$name.log"
	if "$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len=16384 -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$OUT/artifacts/${name}-" "$corpus" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log")
		echo "== fuzz_$name: ok, ${runs:-?} runs, corpus $(ls "$corpus" | wc -l) inputs"
	else
		echo "== fuzz_$name: FAILED (log: $log)"
		tail -n 40 "$log"
		status=1
	fi
done

[ "$found" = 1 ] || { echo "run-fuzz.sh: no tests/fuzz/fuzz_*.c"; exit 1; }
exit $status
