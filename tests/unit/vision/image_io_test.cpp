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

// 24-bit BI_RGB BMP header of w x h pixels followed by `data_bytes` bytes of pixels.
std::vector<uint8_t> bmp24_header(uint32_t w, uint32_t h, size_t data_bytes) {
  std::vector<uint8_t> b(54 + data_bytes, 0x5a);
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  b[0] = 'B';
  b[1] = 'M';
  put32(2, static_cast<uint32_t>(b.size()));
  put32(6, 0);
  put32(10, 54);
  put32(14, 40);
  put32(18, w);
  put32(22, h);
  b[26] = 1;
  b[27] = 0;
  b[28] = 24;
  b[29] = 0;
  put32(30, 0);
  return b;
}

std::string refusal(const std::vector<uint8_t>& bytes, const std::string& name) {
  try {
    decode_image_rgb(bytes.data(), bytes.size(), name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Found by tests/fuzz/fuzz_image (a timeout): a small BMP whose header claims 11206686 x 20 pixels made stb allocate
// ~670 MB and decode zeros past the end of the file for over 20 s before the pixel limit refused it. The header's
// size is now checked before decoding, and an uncompressed BMP shorter than its pixel array is refused as Pillow does.
TEST(ImageDecode, BmpHugeHeaderRefusedBeforeDecoding) {
  const std::string huge = refusal(bmp24_header(11206686, 20, 863), "fuzz.bmp");
  EXPECT_NE(huge.find("fuzz.bmp"), std::string::npos) << huge;
  EXPECT_NE(huge.find("exceeds Pillow's limit"), std::string::npos) << huge;
  const std::string truncated = refusal(bmp24_header(30, 20, 100), "short.bmp");
  EXPECT_NE(truncated.find("short.bmp: image file is truncated"), std::string::npos) << truncated;
  // Complete file (20 rows of 92 bytes; the last row's padding may be missing) decodes.
  EXPECT_EQ(decode_image_rgb(bmp24_header(30, 20, 19 * 92 + 90).data(), 54 + 19 * 92 + 90, "ok.bmp").width, 30);
}

// Hand-made GIF: 3x2 logical screen, a 2x2 frame at x = 1 holding indices 0,1 / 2,3, transparent index 2; with
// a global palette of 4 entries or none. `lzw_at` gets the offset of the LZW sub-blocks.
std::vector<uint8_t> hand_gif(bool global_palette, size_t* lzw_at) {
  std::vector<uint8_t> g = {'G', 'I', 'F', '8', '9', 'a', 3, 0, 2, 0, static_cast<uint8_t>(global_palette ? 0x81 : 0),
                            0, 0};
  if (global_palette) {
    const uint8_t pal[12] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
    g.insert(g.end(), pal, pal + 12);
  }
  const uint8_t gce[8] = {0x21, 0xF9, 4, 0x01, 0, 0, 2, 0};  // transparency flag, index 2
  g.insert(g.end(), gce, gce + 8);
  const uint8_t desc[10] = {0x2C, 1, 0, 0, 0, 2, 0, 2, 0, 0};  // no local palette
  g.insert(g.end(), desc, desc + 10);
  // LZW, min code size 2: clear(4), literals 0 1 2 3 (3-bit codes; the table reaches 8 entries after the
  // third literal so the fourth literal and the end code (5) are 4-bit), packed LSB first.
  const std::pair<uint32_t, int> codes[] = {{4, 3}, {0, 3}, {1, 3}, {2, 3}, {3, 4}, {5, 4}};
  uint32_t acc = 0;
  int nbits = 0;
  std::vector<uint8_t> data;
  for (auto [code, width] : codes) {
    acc |= code << nbits;
    nbits += width;
    while (nbits >= 8) {
      data.push_back(static_cast<uint8_t>(acc & 0xFF));
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) data.push_back(static_cast<uint8_t>(acc));
  *lzw_at = g.size();
  g.push_back(2);
  g.push_back(static_cast<uint8_t>(data.size()));
  g.insert(g.end(), data.begin(), data.end());
  g.push_back(0);
  g.push_back(0x3B);
  return g;
}

// Pillow fills the canvas with the transparent index, writes every frame index (the transparent one too) and
// maps indices through the palette: column 0 gets palette[2], the frame its own colours.
TEST(ImageDecode, GifCanvasTransparencyAndPalette) {
  size_t lzw_at = 0;
  const std::vector<uint8_t> g = hand_gif(true, &lzw_at);
  RgbImage img = decode_image_rgb(g.data(), g.size(), "hand.gif");
  ASSERT_EQ(img.width, 3);
  ASSERT_EQ(img.height, 2);
  const std::vector<uint8_t> expect = {70, 80, 90, 10, 20, 30, 40, 50, 60,  // row 0: fill(2), idx 0, idx 1
                                       70, 80, 90, 70, 80, 90, 100, 110, 120};  // row 1: fill(2), idx 2, idx 3
  EXPECT_EQ(img.data, expect);
  // Cut inside the data sub-block: Pillow does not decode an incomplete block, so the frame stays unfilled
  // and the file is refused as truncated.
  std::vector<uint8_t> cut(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(lzw_at + 3));
  expect_refused(cut, "cut.gif");
}

// Neither a global nor a local palette (fuzz_image found the decoder copying from the empty palette, undefined
// under UBSan): Pillow opens it as mode L, so convert("RGB") gives each index as grey.
TEST(ImageDecode, GifWithoutAnyPaletteIsGrey) {
  size_t lzw_at = 0;
  const std::vector<uint8_t> g = hand_gif(false, &lzw_at);
  RgbImage img = decode_image_rgb(g.data(), g.size(), "nopalette.gif");
  ASSERT_EQ(img.width, 3);
  ASSERT_EQ(img.height, 2);
  const std::vector<uint8_t> expect = {2, 2, 2, 0, 0, 0, 1, 1, 1,   // row 0: fill(2), idx 0, idx 1
                                       2, 2, 2, 2, 2, 2, 3, 3, 3};  // row 1: fill(2), idx 2, idx 3
  EXPECT_EQ(img.data, expect);
}

// Image.MAX_IMAGE_PIXELS: every format refuses an image of more than twice the limit before decoding it, and
// decodes one of exactly twice the limit; the setter refuses a limit below 1.
TEST(ImageDecode, MaxImagePixelsAppliesToEveryFormat) {
  struct Restore {
    ~Restore() { set_max_image_pixels(kPillowMaxImagePixels); }
  } restore;
  EXPECT_EQ(max_image_pixels(), kPillowMaxImagePixels);
  size_t lzw_at = 0;
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {
      {"retina.jpg", read_bytes(kImages + "retina.jpg")},
      {"cell.png", read_bytes(kImages + "cell.png")},
      {"ok.bmp", bmp24_header(30, 20, 19 * 92 + 90)},
      {"hand.gif", hand_gif(true, &lzw_at)}};
  for (const auto& [name, bytes] : files) {
    const RgbImage full = decode_image_rgb(bytes.data(), bytes.size(), name);
    const int64_t px = full.width * full.height;
    ASSERT_GT(px, 1) << name;
    set_max_image_pixels((px + 1) / 2);  // 2 * limit >= px: decodes, the same pixels
    EXPECT_EQ(decode_image_rgb(bytes.data(), bytes.size(), name).data, full.data) << name;
    set_max_image_pixels((px - 1) / 2);  // 2 * limit < px: refused
    const std::string why = refusal(bytes, name);
    EXPECT_NE(why.find(name), std::string::npos) << why;
    EXPECT_NE(why.find("exceeds Pillow's limit"), std::string::npos) << name << ": " << why;
    set_max_image_pixels(kPillowMaxImagePixels);
  }
  EXPECT_THROW(set_max_image_pixels(0), Error);
  EXPECT_EQ(max_image_pixels(), kPillowMaxImagePixels);
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

// Found by tests/fuzz/fuzz_preprocessor_config (UBSan: float-cast-overflow): an integral float beyond int64 was
// converted to int64_t. Out-of-range integers and sizes that would overflow factor() / patch_dim() are refused,
// naming the file and the field.
TEST(ImageProcessorConfig, RefusesOutOfRangeIntegers) {
  const std::string dir = std::string(MEDR1_BINARY_DIR) + "/test_vision_tmp";
  std::filesystem::create_directories(dir);
  auto refusal = [&](const std::string& name, const std::string& text) -> std::string {
    std::ofstream(dir + "/" + name) << text;
    try {
      load_image_processor_config(dir + "/" + name);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string msg = refusal("huge.json", R"({"size": {"min_pixels": 3136, "max_pixels": 1.2845e129}})");
  EXPECT_NE(msg.find("huge.json: size.max_pixels: integer out of range"), std::string::npos) << msg;
  msg = refusal("u64.json", R"({"min_pixels": 18446744073709551615})");
  EXPECT_NE(msg.find("u64.json: min_pixels: integer out of range"), std::string::npos) << msg;
  msg = refusal("patch.json", R"({"patch_size": 4611686018427387904, "merge_size": 4})");
  EXPECT_NE(msg.find("patch.json: patch_size: must be in 1..1024"), std::string::npos) << msg;
  msg = refusal("merge.json", R"({"merge_size": 1e6})");
  EXPECT_NE(msg.find("merge.json: merge_size: must be in 1..1024"), std::string::npos) << msg;
}

}  // namespace
}  // namespace medr1::vision
