// smart_resize rules (transformers qwen2_vl smart_resize): Python round-half-to-even, max/min pixel rescale,
// refusals. Expected values are the reference's (README cases) or worked by hand from the formula.
#include <gtest/gtest.h>

#include "medr1/core/error.h"
#include "medr1/vision/image_processor.h"

namespace medr1::vision {
namespace {

using HW = std::pair<int64_t, int64_t>;

TEST(SmartResize, HalfRoundsToEven) {
  // pre_half_rounding: 126 x 70 (h x w): 126/28 = 4.5 -> 4, 70/28 = 2.5 -> 2 (std::round would give 140, 84).
  EXPECT_EQ(smart_resize(126, 70, 28, 3136, 12845056), HW(112, 56));
  // 3.5 -> 4 (to even, upward).
  EXPECT_EQ(smart_resize(98, 98, 28, 3136, 12845056), HW(112, 112));
}

TEST(SmartResize, ReferenceCases) {
  EXPECT_EQ(smart_resize(256, 256), HW(252, 252));    // pre_square
  EXPECT_EQ(smart_resize(200, 300), HW(196, 308));    // pre_wide
  EXPECT_EQ(smart_resize(90, 60), HW(84, 56));        // pre_small
  EXPECT_EQ(smart_resize(50, 40), HW(84, 56));        // pre_tiny_upscaled (min_pixels)
  EXPECT_EQ(smart_resize(640, 700, 28, 3136, 401408), HW(588, 644));  // max_pixels
  EXPECT_EQ(smart_resize(38, 45), HW(56, 84));        // pre_t_upscaled
  EXPECT_EQ(smart_resize(1411, 1411, 28, 3136, 401408), HW(616, 616));  // retina
  EXPECT_EQ(smart_resize(660, 550, 28, 3136, 401408), HW(672, 560));    // cell
}

TEST(SmartResize, RefusesSidesBelowFactor) {
  try {
    smart_resize(10, 10, 28, 3136, 401408, "palette_gray.png");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("height:10 or width:10 must be larger than factor:28"), std::string::npos) << msg;
    EXPECT_NE(msg.find("palette_gray.png"), std::string::npos) << msg;
  }
  EXPECT_THROW(smart_resize(27, 500), Error);
  EXPECT_NO_THROW(smart_resize(28, 500));
}

TEST(SmartResize, RefusesAspectRatioAbove200) {
  EXPECT_THROW(smart_resize(28, 28 * 201), Error);
  EXPECT_NO_THROW(smart_resize(28, 28 * 200));
}

}  // namespace
}  // namespace medr1::vision
