// Decoder refusals and conversions that the golden files do not cover: empty, truncated, corrupt and unknown
// files must raise medr1::Error naming the file (Pillow raises for all of them); the Pillow conversion
// formulas checked on hand-made inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "medr1/core/error.h"
#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"
#include "vision_test_util.h"

namespace medr1::vision {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void expect_refused(const std::vector<uint8_t>& bytes, const std::string& name) {
  try {
    decode_image_rgb(bytes.data(), bytes.size(), name);
    ADD_FAILURE() << name << ": expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

const std::string kImages = std::string(MEDR1_TEST_DATA) + "/images-real/images/";

TEST(ImageDecode, RefusesEmptyAndUnknown) {
  expect_refused({}, "empty.png");
  expect_refused({'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}, "text.jpg");
  try {
    load_image_rgb("/nonexistent/dir/missing.png");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos);
  }
}

TEST(ImageDecode, RefusesTruncatedJpegAndPng) {
  for (const char* f : {"retina.jpg", "progressive.jpg", "cmyk.jpg", "ihc.png", "cell.png", "green_palette.png"}) {
    std::vector<uint8_t> b = read_bytes(kImages + f);
    ASSERT_GT(b.size(), 400u) << f;
    b.resize(b.size() / 2);
    expect_refused(b, std::string("half_") + f);
    b.resize(200);  // inside the headers
    expect_refused(b, std::string("head_") + f);
  }
}

TEST(ImageDecode, RefusesCorruptPngCrc) {
  std::vector<uint8_t> b = read_bytes(kImages + "rgba.png");
  ASSERT_GT(b.size(), 40u);
  b[20] ^= 0xFF;  // inside IHDR: width/height bytes, CRC no longer matches
  expect_refused(b, "crc.png");
}

TEST(ImageDecode, JpegMissingEoiIsRefusedPngMissingIendIsNot) {
  // Pillow 9.4 (Debian's, same libjpeg-turbo 2.1.5) raises "image file is truncated" for a JPEG without its
  // end-of-image marker (the entropy decoder suspends on its look-ahead), but returns a PNG whose IEND is cut.
  std::vector<uint8_t> b = read_bytes(kImages + "gray.jpg");
  ASSERT_EQ(b[b.size() - 2], 0xFF);
  ASSERT_EQ(b[b.size() - 1], 0xD9);
  b.resize(b.size() - 2);
  expect_refused(b, "gray_noeoi.jpg");
  std::vector<uint8_t> p = read_bytes(kImages + "rgba.png");
  RgbImage full = decode_image_rgb(p.data(), p.size(), "rgba.png");
  p.resize(p.size() - 12);
  RgbImage cut = decode_image_rgb(p.data(), p.size(), "rgba_noiend.png");
  EXPECT_EQ(full.data, cut.data);
}

TEST(ImageDecode, ModesOfTheFixtures) {
  EXPECT_EQ(load_image_rgb(kImages + "palette_gray.png").source_mode, "P");
  EXPECT_EQ(load_image_rgb(kImages + "gray16.png").source_mode, "I");
  EXPECT_EQ(load_image_rgb(kImages + "cmyk.jpg").source_mode, "CMYK");
  EXPECT_EQ(load_image_rgb(kImages + "la.png").source_mode, "LA");
}

// Minimal uncompressed BMP (24-bit, bottom-up rows, BGR, rows padded to 4 bytes) through stb_image.
TEST(ImageDecode, Bmp24) {
  const int w = 2, h = 2, row = 8;
  std::vector<uint8_t> b(54 + row * h, 0);
  auto put32 = [&](size_t at, uint32_t v) { for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i)); };
  b[0] = 'B';
  b[1] = 'M';
  put32(2, static_cast<uint32_t>(b.size()));
  put32(10, 54);
  put32(14, 40);
  put32(18, w);
  put32(22, h);
  b[26] = 1;
  b[28] = 24;
  // bottom row (y = 1): (B,G,R) = (1,2,3), (4,5,6); top row (y = 0): (7,8,9), (10,11,12)
  const uint8_t px[2][6] = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}};
  for (int r = 0; r < 2; ++r) std::memcpy(&b[54 + r * row], px[r], 6);
  RgbImage img = decode_image_rgb(b.data(), b.size(), "t.bmp");
  ASSERT_EQ(img.width, 2);
  ASSERT_EQ(img.height, 2);
  const std::vector<uint8_t> expect = {9, 8, 7, 12, 11, 10, 3, 2, 1, 6, 5, 4};
  EXPECT_EQ(img.data, expect);
}

TEST(ResizeBicubic, SameSizeIsExactCopyAndOneAxisPass) {
  RgbImage img = load_image_rgb(kImages + "rgba.png");  // 130 x 90
  RgbImage same = resize_bicubic(img, img.width, img.height);
  EXPECT_EQ(same.data, img.data);
  // Only the width changes: rows are resampled independently, so a uniform column stays uniform.
  RgbImage flat;
  flat.width = 40;
  flat.height = 30;
  flat.data.assign(40 * 30 * 3, 0);
  for (int64_t y = 0; y < 30; ++y)
    for (int64_t x = 0; x < 40; ++x)
      for (int c = 0; c < 3; ++c) flat.data[static_cast<size_t>((y * 40 + x) * 3 + c)] = static_cast<uint8_t>(y * 8);
  RgbImage wide = resize_bicubic(flat, 57, 30);
  for (int64_t y = 0; y < 30; ++y)
    for (int64_t x = 0; x < 57; ++x) ASSERT_EQ(wide.at(y, x, 1), y * 8) << y << "," << x;
}

TEST(ImageProcessorConfig, ParsesCheckpointFileAndVariants) {
  const std::string dir = std::string(MEDR1_BINARY_DIR) + "/test_vision_tmp";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  ImageProcessorConfig c = load_image_processor_config(std::string(MEDR1_TEST_DATA) +
                                                       "/qwen2vl-tiny/preprocessor_config.json");
  EXPECT_EQ(c.min_pixels, 3136);
  EXPECT_EQ(c.max_pixels, 12845056);
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_EQ(c.temporal_patch_size, 2);
  EXPECT_EQ(c.merge_size, 2);
  EXPECT_DOUBLE_EQ(c.image_mean[1], 0.4578275);
  EXPECT_DOUBLE_EQ(c.image_std[2], 0.27577711);
  EXPECT_DOUBLE_EQ(c.rescale_factor, 1.0 / 255.0);

  c = load_image_processor_config(write("a.json", R"({"size": {"shortest_edge": 100, "longest_edge": 2000}})"));
  EXPECT_EQ(c.min_pixels, 100);
  EXPECT_EQ(c.max_pixels, 2000);
  c = load_image_processor_config(write("b.json", R"({"size": {"min_pixels": 10, "max_pixels": 20}, "max_pixels": 401408})"));
  EXPECT_EQ(c.min_pixels, 10);
  EXPECT_EQ(c.max_pixels, 401408);
  c = load_image_processor_config(write("c.json", "{}"));
  EXPECT_EQ(c.min_pixels, 3136);
  EXPECT_EQ(c.max_pixels, 12845056);
  EXPECT_TRUE(c.do_resize && c.do_rescale && c.do_normalize);

  try {
    load_image_processor_config(write("bad.json", R"({"patch_size": "14"})"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("patch_size"), std::string::npos) << msg;
  }
  EXPECT_THROW(load_image_processor_config(write("bad2.json", R"({"image_mean": [0.5, 0.5]})")), Error);
  EXPECT_THROW(load_image_processor_config(dir + "/absent.json"), Error);
}

}  // namespace
}  // namespace medr1::vision
