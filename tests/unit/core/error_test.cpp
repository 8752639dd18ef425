// medr1::Error and MEDR1_CHECK: messages are the concatenated arguments.
#include <gtest/gtest.h>

#include "medr1/core/error.h"

TEST(Error, CheckThrowsWithMessage) {
  try {
    MEDR1_CHECK(1 + 1 == 3, "config.json: ", "vision_config.depth", ": expected ", 2);
    FAIL() << "no throw";
  } catch (const medr1::Error& e) {
    EXPECT_STREQ(e.what(), "config.json: vision_config.depth: expected 2");
  }
}

TEST(Error, CheckPassesSilently) { EXPECT_NO_THROW(MEDR1_CHECK(true, "never")); }
