"""Runs every test_* function in tests/integration/test_*.py.

Prints PASS/FAIL per test with its time, the failure's message, and ends
with the line "integration: N passed, N failed" that tests/run-all.sh reads.
"""
import argparse
import glob
import importlib.util
import os
import sys
import time
import traceback

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--filter", default="", help="run only tests whose name contains this")
    args = ap.parse_args()
    passed = failed = 0
    for path in sorted(glob.glob(os.path.join(here, "test_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        tests = [(n, getattr(mod, n)) for n in sorted(dir(mod))
                 if n.startswith("test_") and callable(getattr(mod, n))]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        for tname, fn in tests:
            full = "%s.%s" % (name, tname)
            if args.filter and args.filter not in full:
                continue
            t0 = time.time()
            import harness
            harness.CURRENT_TEST[0] = full
            try:
                fn()
                passed += 1
                print("PASS %s (%.1fs)" % (full, time.time() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s (%.1fs)" % (full, time.time() - t0), flush=True)
                traceback.print_exc(file=sys.stdout)
                sys.stdout.flush()
            finally:
                harness.kill_all()
    print("integration: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
