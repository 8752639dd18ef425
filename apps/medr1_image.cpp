// medr1-image: decodes image files as Pillow's open + convert("RGB") does and optionally resizes them with
// Pillow-exact BICUBIC (or the Qwen2-VL smart_resize size); writes binary PPM (P6). Used by
// scripts/check_bicubic.py to diff medr1 against Pillow, and to inspect what the model sees.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

namespace {

void write_ppm(const medr1::vision::RgbImage& img, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot write");
  f << "P6\n" << img.width << " " << img.height << "\n255\n";
  f.write(reinterpret_cast<const char*>(img.data.data()), static_cast<std::streamsize>(img.data.size()));
}

// One job: decode `in`, resize to (w, h) when both > 0, or smart_resize when `smart`, write `out`.
void run_one(const std::string& in, const std::string& out, int64_t w, int64_t h, bool smart, int64_t min_pixels,
             int64_t max_pixels) {
  medr1::vision::RgbImage img = medr1::vision::load_image_rgb(in);
  if (smart) {
    auto [sh, sw] = medr1::vision::smart_resize(img.height, img.width, 28, min_pixels, max_pixels, in);
    h = sh;
    w = sw;
  }
  if (w > 0 && h > 0) img = medr1::vision::resize_bicubic(img, w, h);
  write_ppm(img, out);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"medr1-image: Pillow-exact decode (+ BICUBIC resize) to PPM"};
  std::string input, output, batch;
  int64_t width = 0, height = 0, min_pixels = 3136, max_pixels = 12845056;
  bool smart = false;
  app.add_option("--input", input, "image file (JPEG, PNG, BMP, GIF)");
  app.add_option("--out", output, "output .ppm");
  app.add_option("--width", width, "resize to this width (with --height)");
  app.add_option("--height", height, "resize to this height (with --width)");
  app.add_flag("--smart-resize", smart, "resize to the Qwen2-VL smart_resize size");
  app.add_option("--min-pixels", min_pixels, "smart_resize min_pixels");
  app.add_option("--max-pixels", max_pixels, "smart_resize max_pixels");
  app.add_option("--batch", batch, "file of lines 'input output width height' (0 0 = no resize); errors go to "
                                    "stderr per line as 'ERROR <input>: <message>'");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!batch.empty()) {
      std::ifstream f(batch);
      if (!f) throw std::runtime_error(batch + ": cannot open");
      std::string line;
      while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::string in, out;
        int64_t w = 0, h = 0;
        if (!(ls >> in >> out >> w >> h)) continue;
        try {
          run_one(in, out, w, h, smart, min_pixels, max_pixels);
        } catch (const std::exception& e) {
          std::cerr << "ERROR " << in << ": " << e.what() << "\n";
        }
      }
      return 0;
    }
    if (input.empty() || output.empty()) throw std::runtime_error("--input and --out are required (or --batch)");
    run_one(input, output, width, height, smart, min_pixels, max_pixels);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "medr1-image: " << e.what() << "\n";
    return 1;
  }
}
