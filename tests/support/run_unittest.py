"""Runs Python unittest modules the way ctest registers them (tests/CMakeLists.txt):

    python3 run_unittest.py MODULE [MODULE...]     (from the module's folder)

Same as `python3 -m unittest -v MODULE`, plus one rule: with CHSYNC_REQUIRE_ALL=1 in the
environment (.ci/run sets it) every skip is reported as a FAILURE naming the test and the reason:
skipTest(), @skipIf/@skipUnless on a test or a class, and SkipTest raised in setUpClass. Without
it a missing tool (time, systemd-analyze, chromium, ...) turns tests into skips and CI stays green.
"""
import os
import sys
import unittest

REQUIRE_ALL = os.environ.get("CHSYNC_REQUIRE_ALL") == "1"


class RequireAllResult(unittest.TextTestResult):
    def addSkip(self, test, reason):
        if not REQUIRE_ALL:
            return super().addSkip(test, reason)
        try:
            raise AssertionError(f"CHSYNC_REQUIRE_ALL=1 but the test was skipped: {reason}")
        except AssertionError:
            self.addFailure(test, sys.exc_info())


def main():
    sys.path.insert(0, os.getcwd())
    runner = unittest.TextTestRunner(verbosity=2, resultclass=RequireAllResult)
    unittest.main(module=None, argv=["run_unittest.py"] + sys.argv[1:], testRunner=runner)


if __name__ == "__main__":
    main()
