// libFuzzer target: preprocessor_config.json (vision::load_image_processor_config), then the
// processor with the parsed config on a small fixed image (a config comes with a checkpoint: its
// sizes must not crash the resize, the patchify or the pixel bounds).
#include <cstdint>
#include <exception>

#include "fuzz_util.h"
#include "medr1/vision/image_processor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = medr1::fuzz::write_scratch(data, size, "preprocessor_config.json");
  try {
    const auto cfg = medr1::vision::load_image_processor_config(path);
    (void)medr1::vision::smart_resize(300, 200, cfg.factor(), cfg.min_pixels, cfg.max_pixels, path);
    // Keep the fuzz case's memory bounded: the processor's output is max_pixels * 3 floats at most.
    if (cfg.max_pixels > 1024 * 1024 || cfg.min_pixels > 1024 * 1024) return 0;
    medr1::vision::RgbImage img;
    img.width = 64;
    img.height = 48;
    img.data.assign(static_cast<size_t>(img.width * img.height * 3), 128);
    (void)medr1::vision::preprocess(img, cfg, path);
  } catch (const std::exception&) {
  }
  return 0;
}
