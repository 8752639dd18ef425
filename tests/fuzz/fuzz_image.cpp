// libFuzzer target: image files (vision::decode_image_rgb: PNG / JPEG / GIF / BMP), then the
// processor's smart_resize + preprocess at Med-R1's max_pixels (401408), the path every dataset
// image takes.
#include <cstdint>
#include <exception>

#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto img = medr1::vision::decode_image_rgb(data, size, "fuzz-image");
    if (img.data.size() != static_cast<size_t>(img.width * img.height * 3))
      __builtin_trap();  // decoder contract
    // The decoder caps images at Pillow's 178956970 pixels; resizing one that big takes seconds, so
    // the processor runs only on images of up to 4 Mpx here (the decoder itself is fuzzed on any
    // size).
    if (img.width * img.height > 4 * 1024 * 1024) return 0;
    medr1::vision::ImageProcessorConfig cfg;
    cfg.max_pixels = 401408;
    (void)medr1::vision::smart_resize(img.height, img.width, cfg.factor(), cfg.min_pixels,
                                      cfg.max_pixels);
    (void)medr1::vision::preprocess(img, cfg, "fuzz-image");
  } catch (const std::exception&) {
  }
  return 0;
}
