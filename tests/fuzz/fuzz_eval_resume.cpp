// libFuzzer target: what medr1-eval reads back when it resumes: summary.json
// (eval::EvalReport::from_json, then the report renderers over it) or an item JSONL's records
// (eval::SplitMetrics::add_json_items). The first byte picks which.
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <vector>

#include "medr1/eval/metrics.h"
#include "medr1/eval/report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    const auto j = nlohmann::json::parse(data + 1, data + size);
    if (data[0] & 1) {
      const auto report = medr1::eval::EvalReport::from_json(j, "summary.json");
      (void)report.to_json().dump();
      (void)report.to_markdown();
      (void)report.to_svg_heatmap();
    } else {
      std::vector<nlohmann::json> items;
      if (j.is_array()) {
        for (const auto& e : j) items.push_back(e);
      } else {
        items.push_back(j);
      }
      medr1::eval::SplitMetrics m("CT(Computed Tomography)", "modality", "clean/think");
      m.add_json_items(items, "items.jsonl");
      (void)m.accuracy();
      (void)m.unparseable_rate();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
