// libFuzzer target: Med-R1 prompt files, a JSON array (Splits/*.json) or JSONL
// (data::load_records_file), then each record back to JSON. The first byte picks the file's
// extension and require_solution.
#include <cstdint>
#include <exception>

#include "fuzz_util.h"
#include "medr1/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = medr1::fuzz::write_scratch(
      data + 1, size - 1, (data[0] & 1) ? "records.jsonl" : "records.json");
  medr1::data::LoadOptions opts;
  opts.image_root = "/data/omnimedvqa";
  opts.require_solution = (data[0] & 2) != 0;
  try {
    for (const auto& r : medr1::data::load_records_file(path, opts, 7))
      (void)medr1::data::record_to_json(r).dump();
  } catch (const std::exception&) {
  }
  return 0;
}
