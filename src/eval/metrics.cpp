// Per-split evaluation accounting (metrics.h).
#include "medr1/eval/metrics.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "medr1/core/error.h"

namespace medr1::eval {

using nlohmann::json;

ItemResult score_item(const data::Record& rec, std::string model_output,
                      const data::AnswerOptions& opts) {
  ItemResult r;
  r.index = rec.index;
  r.question = rec.problem;
  r.image = rec.image;
  r.ground_truth = rec.solution.value_or("");
  const auto j = data::judge_answer(model_output, r.ground_truth, opts);
  r.model_output = std::move(model_output);
  r.extracted_answer = j.extracted_answer;
  r.gt_answer = j.gt_answer;
  r.correct = j.correct;
  return r;
}

ItemResult error_item(const data::Record& rec, std::string error) {
  ItemResult r;
  r.index = rec.index;
  r.question = rec.problem;
  r.image = rec.image;
  r.ground_truth = rec.solution.value_or("");
  r.gt_answer = data::extract_option_answer(r.ground_truth);
  r.error = std::move(error);
  return r;
}

namespace {
json opt_json(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

std::optional<std::string> opt_string(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  MEDR1_CHECK(it->is_string(), where, ": ", key, ": expected string or null");
  return it->get<std::string>();
}

std::string req_string(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  MEDR1_CHECK(it != j.end(), where, ": ", key, ": missing");
  MEDR1_CHECK(it->is_string(), where, ": ", key, ": expected string");
  return it->get<std::string>();
}
}  // namespace

json item_to_json(const ItemResult& r) {
  json j = {{"index", r.index},
            {"question", r.question},
            {"image", r.image},
            {"ground_truth", r.ground_truth},
            {"gt_answer", opt_json(r.gt_answer)},
            {"model_output", r.model_output},
            {"extracted_answer", opt_json(r.extracted_answer)},
            {"correct", r.correct}};
  if (r.error) j["error"] = *r.error;
  return j;
}

ItemResult item_from_json(const json& j, const std::string& where) {
  MEDR1_CHECK(j.is_object(), where, ": expected object");
  ItemResult r;
  auto idx = j.find("index");
  MEDR1_CHECK(idx != j.end() && idx->is_number_integer(), where, ": index: missing or not integer");
  r.index = idx->get<int64_t>();
  r.question = req_string(j, "question", where);
  r.image = opt_string(j, "image", where).value_or("");
  r.ground_truth = req_string(j, "ground_truth", where);
  r.model_output = req_string(j, "model_output", where);
  r.extracted_answer = opt_string(j, "extracted_answer", where);
  r.gt_answer = opt_string(j, "gt_answer", where);
  auto c = j.find("correct");
  MEDR1_CHECK(c != j.end() && c->is_boolean(), where, ": correct: missing or not boolean");
  r.correct = c->get<bool>();
  r.error = opt_string(j, "error", where);
  return r;
}

void SplitMetrics::add(ItemResult r) {
  ++num_samples;
  if (r.correct) ++num_correct;
  if (r.error) {
    ++num_errors;
  } else if (!r.extracted_answer) {
    ++num_unparseable;
  }
  if (!r.gt_answer) ++num_gt_unparseable;
  results.push_back(std::move(r));
}

void SplitMetrics::add_json_items(const std::vector<json>& items, const std::string& where) {
  // Parse all first: a bad item leaves the metrics unchanged.
  std::vector<ItemResult> parsed;
  parsed.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i)
    parsed.push_back(item_from_json(items[i], where + ": item " + std::to_string(i)));
  for (auto& r : parsed) add(std::move(r));
}

double SplitMetrics::accuracy() const {
  return num_samples > 0 ? static_cast<double>(num_correct) / num_samples * 100.0 : 0.0;
}

double SplitMetrics::unparseable_rate() const {
  return num_samples > 0 ? static_cast<double>(num_unparseable) / num_samples * 100.0 : 0.0;
}

json SplitMetrics::to_json(const json& meta) const {
  json j = {{"split", name},
            {"split_type", type},
            {"setting", setting},
            {"accuracy", accuracy()},
            {"num_samples", num_samples},
            {"num_correct", num_correct},
            {"num_unparseable", num_unparseable},
            {"unparseable_rate", unparseable_rate()},
            {"num_errors", num_errors},
            {"num_gt_unparseable", num_gt_unparseable}};
  if (meta.is_object())
    for (auto it = meta.begin(); it != meta.end(); ++it) j[it.key()] = it.value();
  std::vector<const ItemResult*> sorted;
  sorted.reserve(results.size());
  for (const auto& r : results) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const ItemResult* a, const ItemResult* b) { return a->index < b->index; });
  json arr = json::array();
  for (const auto* r : sorted) arr.push_back(item_to_json(*r));
  j["results"] = std::move(arr);
  return j;
}

void write_json_atomic(const std::string& path, const json& j) {
  namespace fs = std::filesystem;
  const auto parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    MEDR1_CHECK(!ec, parent.string(), ": cannot create folder (", ec.message(), ")");
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MEDR1_CHECK(out.good(), tmp, ": cannot open for writing (", std::strerror(errno), ")");
    out << j.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
    out.close();
    MEDR1_CHECK(!out.fail(), tmp, ": write failed");
  }
  MEDR1_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot rename ", tmp, " (",
              std::strerror(errno), ")");
}

}  // namespace medr1::eval
