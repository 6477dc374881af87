// main() of every GoogleTest binary (replaces GTest::gtest_main). One rule on top of gtest's own:
// with CHSYNC_REQUIRE_ALL=1 in the environment (.ci/run sets it) a skipped test FAILS, naming the
// test and its reason. ctest reports a GTEST_SKIP as "Skipped" and still exits 0, so without this a
// missing tool (curl, openssl, a mount) would silently shrink what CI proves.
#include <cstdlib>
#include <cstring>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

bool require_all() {
  const char* v = std::getenv("CHSYNC_REQUIRE_ALL");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

class FailSkippedTests : public testing::EmptyTestEventListener {
  // OnTestEnd runs while the test is still the current one, so ADD_FAILURE lands on it (failures
  // may not be raised from OnTestPartResult). End events reach listeners in reverse order, so
  // this runs before the default printer, which then prints FAILED instead of SKIPPED.
  void OnTestEnd(const testing::TestInfo& info) override {
    if (info.result()->Skipped()) {
      ADD_FAILURE() << "CHSYNC_REQUIRE_ALL=1: " << info.test_suite_name() << "." << info.name()
                    << " was skipped (reason above); install what it needs or fix the skip";
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleMock(&argc, argv);
  if (require_all()) {
    testing::UnitTest::GetInstance()->listeners().Append(new FailSkippedTests);
  }
  return RUN_ALL_TESTS();
}
