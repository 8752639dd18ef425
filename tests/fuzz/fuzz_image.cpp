// libFuzzer target: image files (vision::decode_image_rgb: PNG / JPEG / GIF / BMP), then the
// processor's smart_resize + preprocess at Med-R1's max_pixels (401408), the path every dataset
// image takes.
#include <cstdint>
#include <exception>

#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Image.MAX_IMAGE_PIXELS of 2 Mpx: images above 4 Mpx are refused from their header, as every image above
  // Pillow's 179 Mpx is by default. The code paths are the same at any size, but a 200-byte JPEG declaring
  // 92 Mpx costs seconds per execution under ASan; with the default limit the corpus fills with such inputs
  // and the rate falls from ~800 to ~50 executions/s.
  medr1::vision::set_max_image_pixels(2 * 1024 * 1024);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto img = medr1::vision::decode_image_rgb(data, size, "fuzz-image");
    if (img.data.size() != static_cast<size_t>(img.width * img.height * 3))
      __builtin_trap();  // decoder contract
    medr1::vision::ImageProcessorConfig cfg;
    cfg.max_pixels = 401408;
    (void)medr1::vision::smart_resize(img.height, img.width, cfg.factor(), cfg.min_pixels,
                                      cfg.max_pixels);
    (void)medr1::vision::preprocess(img, cfg, "fuzz-image");
  } catch (const std::exception&) {
  }
  return 0;
}
