#!/usr/bin/env bash
# run-all.sh [--unit-only]: the whole test suite, as `make test` runs it.
#
# Starts a throwaway Postgres cluster (unless TRYGG_TEST_DATABASE_URL is
# set), runs every unit test binary, then the integration tests against the
# real service binaries, and ends with one summary line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export TRYGG_BIN_DIR=$PWD/$BUILD/bin
# Sanitizer builds use several times the memory: size checks are off there.
# Leaks inside libnng itself are suppressed (tests/lsan.supp says why).
case "$BUILD" in build-san*)
  export TRYGG_SANITIZED=1
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  ;;
esac
PY=/usr/bin/python3
[ -x $PY ] || PY=python3

tmp=$(mktemp -d /tmp/trygg-test.XXXXXX)
chmod 755 "$tmp"
cleanup() {
  if [ -z "${KEEP_CLUSTER:-}" ] && [ -n "${own_cluster:-}" ]; then
    deploy/pg-cluster.sh stop "$tmp/pg" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${TRYGG_TEST_DATABASE_URL:-}" ]; then
  # fsync stays on: the fault tests kill processes, and durability is the
  # property under test.
  deploy/pg-cluster.sh start "$tmp/pg" || exit 1
  own_cluster=1
  export TRYGG_TEST_PGDIR=$tmp/pg
  export TRYGG_TEST_DATABASE_URL=$(deploy/pg-cluster.sh url "$tmp/pg")
fi
export TRYGG_TEST_TMP=$tmp

passed=0; failed=0; failed_names=()
echo "== unit tests"
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  if "$t" >"$tmp/$name.log" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name"
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "FAIL $name"; cat "$tmp/$name.log"
  fi
done

if [ "${1:-}" != "--unit-only" ]; then
  echo "== integration tests"
  $PY tests/integration/run.py ${TRYGG_TEST_FILTER:+--filter "$TRYGG_TEST_FILTER"} | tee "$tmp/integration.log"
  line=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$tmp/integration.log" | tail -1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failed_names+=("integration (runner crashed)")
  else
    p=$(echo "$line" | sed -E 's/^integration: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/^integration: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    passed=$((passed + p)); failed=$((failed + f))
    [ "$f" -gt 0 ] && failed_names+=("integration")
  fi
fi

echo
[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
