// libFuzzer target: a `datasets` save_to_disk folder's Arrow file (data::load_dataset over a folder with
// a fixed dataset_info.json + state.json and the input as data-00000-of-00001.arrow: Apache Arrow's IPC
// reader, every batch ValidateFull'ed, then our column handling: the image struct {bytes, path},
// problem, solution, other columns to JSON), then each embedded image through the decoder. Bit 0 of
// the first byte sets require_solution.
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_util.h"
#include "medr1/data/dataset.h"
#include "medr1/vision/image_io.h"

namespace {

const char* kState = R"({"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_fingerprint": "f",
 "_format_columns": null, "_format_kwargs": {}, "_format_type": null, "_output_all_columns": false, "_split": null})";
const char* kInfo = R"({"citation": "", "description": "", "features": {"image": {"_type": "Image"},
 "problem": {"dtype": "string", "_type": "Value"}, "solution": {"dtype": "string", "_type": "Value"}},
 "homepage": "", "license": ""})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string arrow_path = medr1::fuzz::write_scratch(data + 1, size - 1, "ds/data-00000-of-00001.arrow");
  const std::filesystem::path dir = std::filesystem::path(arrow_path).parent_path();
  static bool sides_written = false;
  if (!sides_written) {
    std::ofstream(dir / "state.json") << kState;
    std::ofstream(dir / "dataset_info.json") << kInfo;
    sides_written = true;
  }
  try {
    medr1::data::LoadOptions lo;
    lo.require_solution = (data[0] & 1) != 0;
    for (const auto& r : medr1::data::load_dataset(dir.string(), lo)) {
      if (!r.image_bytes) continue;
      try {
        const auto img = medr1::vision::decode_image_rgb(r.image_bytes->data(), r.image_bytes->size(), r.image);
        if (img.data.size() != static_cast<size_t>(img.width * img.height * 3)) __builtin_trap();
      } catch (const std::exception&) {
      }
    }
  } catch (const std::exception&) {
  }
  return 0;
}
