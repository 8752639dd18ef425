// run_split (runner.h): the resumable per-(split, setting) loop. Batches go to the GenerateFn; a batch that
// throws is retried one record at a time and records that still throw become error items; every scored item
// is appended to the JSONL at once, and the result JSON is rebuilt from the whole JSONL at the end.
#include "medr1/eval/runner.h"

#include <filesystem>
#include <optional>

#include "medr1/core/error.h"
#include "medr1/data/jsonl_writer.h"
#include "medr1/data/progress.h"
#include "medr1/eval/report.h"

namespace fs = std::filesystem;

namespace medr1::eval {

SplitRunResult run_split(const std::string& split_name, const std::vector<data::Record>& records,
                         const GenerateFn& generate, const SplitRunOptions& opts) {
  MEDR1_CHECK(opts.batch_size >= 1, "run_split: batch_size must be >= 1, got ", opts.batch_size);
  fs::create_directories(opts.output_dir);
  const std::string file = result_file_name(split_name, opts.setting);
  const std::string stem = file.substr(0, file.size() - 5);  // minus ".json"
  SplitRunResult res;
  res.jsonl_path = (fs::path(opts.output_dir) / (stem + ".jsonl")).string();
  res.json_path = (fs::path(opts.output_dir) / file).string();

  data::JsonlWriterOptions wo;
  wo.fsync_every = opts.fsync_every;
  wo.resume = opts.resume;
  {
    data::JsonlWriter writer(res.jsonl_path, wo);
    res.n_resumed = static_cast<int64_t>(writer.existing().size());
    std::vector<const data::Record*> todo, unscorable;
    for (const auto& r : records)
      if (!writer.contains(r.index)) (r.solution ? todo : unscorable).push_back(&r);
    std::optional<data::ProgressBar> bar;
    if (opts.show_progress && !todo.empty()) {
      data::ProgressOptions po;
      po.initial = static_cast<int64_t>(records.size() - todo.size() - unscorable.size());
      bar.emplace("eval " + split_name + " " + opts.setting, static_cast<int64_t>(records.size()), po);
    }
    auto emit = [&](ItemResult item) {
      writer.write(item_to_json(item));
      ++res.n_generated;
      if (bar) bar->advance();
    };
    // A record without a solution cannot be scored: an error item naming it, nothing generated.
    for (const data::Record* r : unscorable)
      emit(error_item(*r, r->source_file + ": record " + std::to_string(r->file_index) +
                              ": no \"solution\": cannot be scored"));
    auto call = [&](const std::vector<const data::Record*>& batch) {
      std::vector<std::string> outs = generate(batch);
      return outs;
    };
    for (size_t start = 0; start < todo.size(); start += static_cast<size_t>(opts.batch_size)) {
      const size_t end = std::min(todo.size(), start + static_cast<size_t>(opts.batch_size));
      const std::vector<const data::Record*> batch(todo.begin() + static_cast<std::ptrdiff_t>(start),
                                                   todo.begin() + static_cast<std::ptrdiff_t>(end));
      std::optional<std::vector<std::string>> outs;
      std::string batch_error;
      try {
        outs = call(batch);
      } catch (const std::exception& e) {
        batch_error = e.what();
      }
      if (outs) {
        MEDR1_CHECK(outs->size() == batch.size(), "run_split: ", split_name, ": the generator returned ", outs->size(),
                    " outputs for ", batch.size(), " records");
        for (size_t k = 0; k < batch.size(); ++k) emit(score_item(*batch[k], std::move((*outs)[k]), opts.answer));
        continue;
      }
      for (const data::Record* r : batch) {
        if (batch.size() == 1) {
          emit(error_item(*r, batch_error));
          continue;
        }
        std::optional<std::vector<std::string>> one;
        try {
          one = call({r});
        } catch (const std::exception& e) {
          emit(error_item(*r, e.what()));
          continue;
        }
        MEDR1_CHECK(one->size() == 1, "run_split: ", split_name, ": the generator returned ", one->size(),
                    " outputs for 1 record");
        emit(score_item(*r, std::move(one->front()), opts.answer));
      }
    }
    writer.close();
    if (bar) bar->finish();
  }
  // The result covers the whole JSONL (earlier runs included).
  data::JsonlWriter reader(res.jsonl_path);
  res.metrics = SplitMetrics(split_name, opts.split_type, opts.setting);
  res.metrics.add_json_items(reader.existing(), res.jsonl_path);
  reader.close();
  write_json_atomic(res.json_path, res.metrics.to_json(opts.meta));
  return res;
}

}  // namespace medr1::eval
