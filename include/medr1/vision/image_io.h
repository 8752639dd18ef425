// Image file decoding to 8-bit RGB exactly as Pillow 9.4 does `Image.open(path).convert("RGB")`:
// JPEG through libjpeg-turbo (islow IDCT, fancy upsampling, Adobe-inverted CMYK as Pillow converts it),
// PNG through libpng (L, LA, P with palette, RGB, RGBA, 16-bit grey opened as mode I and CLIPPED at
// 255 by convert("RGB")), BMP through stb_image, GIF (first frame, Pillow's canvas/transparency/palette rules)
// through a small LZW decoder of our own. Alpha is dropped without compositing and the EXIF
// orientation is ignored, as transformers v4.49's Qwen2VLImageProcessor sees the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace medr1::vision {

// An 8-bit RGB image, rows top to bottom, HWC interleaved: data[(y * width + x) * 3 + c].
struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> data;  // [H, W, 3]
  // Pillow's mode of the file before convert("RGB"): "RGB", "L", "P", "RGBA", "LA", "I", "CMYK", ...
  // Informational (empty for images not made by the decoder).
  std::string source_mode;

  uint8_t at(int64_t y, int64_t x, int c) const { return data[static_cast<size_t>((y * width + x) * 3 + c)]; }
};

// Pillow `Image.open(path).convert("RGB")`. Throws medr1::Error naming the file when it cannot be read,
// is empty, truncated, corrupt or of an unknown format.
RgbImage load_image_rgb(const std::string& path);

// Same on bytes already in memory; `name_for_errors` is what error messages call the file.
RgbImage decode_image_rgb(const uint8_t* bytes, size_t n, const std::string& name_for_errors);

// Pillow's Image.MAX_IMAGE_PIXELS (default 89478485): every decoder refuses, before allocating, an image of
// more than twice this many pixels (Pillow's DecompressionBombError). Process-wide, thread-safe; the setter
// takes 1..2^40 (a lower limit for untrusted files, or for the fuzz target, which would otherwise spend
// seconds per 90-Mpx image declared by a 200-byte JPEG).
inline constexpr int64_t kPillowMaxImagePixels = 89478485;
int64_t max_image_pixels();
void set_max_image_pixels(int64_t pixels);

// Writes an RGB PNG (libpng). Errors name the path.
void write_png(const std::string& path, const RgbImage& img);

}  // namespace medr1::vision
