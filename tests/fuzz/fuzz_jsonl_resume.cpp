// libFuzzer target: the resume scan of an existing medr1-infer / medr1-eval output JSONL
// (data::JsonlWriter opens it: complete lines parsed, `index` read, a half-written last line cut
// off), then one new record appended.
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "medr1/data/jsonl_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = medr1::fuzz::write_scratch(data, size, "results.jsonl");
  try {
    medr1::data::JsonlWriterOptions o;
    o.fsync_every = 0;
    medr1::data::JsonlWriter w(path, o);
    (void)w.contains(3);
    (void)w.write(nlohmann::json{{"index", 123456789}, {"output", "A"}});
    w.close();
  } catch (const std::exception&) {
  }
  return 0;
}
