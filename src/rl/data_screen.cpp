// The training set's screen (data_screen.h): per-record checks of solution, options, image and prompt
// length, done once before the first step.
#include "medr1/rl/data_screen.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include "medr1/core/error.h"
#include "medr1/data/answer.h"
#include "medr1/data/progress.h"
#include "medr1/io/checkpoint.h"
#include "medr1/rl/rollout.h"
#include "medr1/vision/image_io.h"

namespace medr1::rl {

namespace fs = std::filesystem;

nlohmann::json DataIssue::to_json() const {
  return {{"index", index}, {"source_file", source_file}, {"record", file_index}, {"image", image},
          {"kind", kind},   {"detail", detail},           {"skipped", skipped}};
}

nlohmann::json DataScreen::summary() const {
  return {{"total", total}, {"kept", static_cast<int64_t>(kept.size())}, {"skipped", skipped}, {"flagged", flagged}};
}

std::string DataScreen::summary_line() const {
  std::ostringstream os;
  int64_t n_skipped = 0;
  for (const auto& [k, n] : skipped) n_skipped += n;
  os << total << " records: " << kept.size() << " kept, " << n_skipped << " skipped";
  auto list = [&](const std::map<std::string, int64_t>& m) {
    bool first = true;
    for (const auto& [k, n] : m) {
      os << (first ? "" : ", ") << k << " " << n;
      first = false;
    }
  };
  if (!skipped.empty()) {
    os << " (";
    list(skipped);
    os << ")";
  }
  if (!flagged.empty()) {
    os << "; flagged, kept: ";
    list(flagged);
  }
  return os.str();
}

std::string option_letters(const std::string& problem) {
  // Letters in order of appearance; the options are the run A, B, C, ... (so a stray "see B)" is none).
  std::string seen;
  for (size_t i = 0; i + 1 < problem.size(); ++i) {
    const char c = problem[i];
    if (c >= 'A' && c <= 'Z' && problem[i + 1] == ')' && (i == 0 || problem[i - 1] == ' ') &&
        seen.find(c) == std::string::npos)
      seen.push_back(c);
  }
  std::string out;
  for (char c : seen) {
    if (c != static_cast<char>('A' + out.size())) break;
    out.push_back(c);
  }
  return out;
}

namespace {

// What the image check found: the merged token count of a good image, else the issue.
struct ImageCheck {
  int64_t tokens = 0;
  std::string kind, detail;
};

ImageCheck check_image(const data::Record& r, const vision::ImageProcessorConfig& ipc) {
  ImageCheck c;
  if (!r.image_bytes && !fs::exists(r.image_path)) {
    c.kind = "image_missing";
    c.detail = "no file '" + r.image_path + "'";
    return c;
  }
  try {
    const vision::RgbImage img = r.image_bytes ? vision::decode_image_rgb(r.image_bytes->data(),
                                                                           r.image_bytes->size(), r.image)
                                               : vision::load_image_rgb(r.image_path);
    const auto [h, w] =
        vision::smart_resize(img.height, img.width, ipc.factor(), ipc.min_pixels, ipc.max_pixels, r.image);
    c.tokens = (h / ipc.factor()) * (w / ipc.factor());
  } catch (const std::exception& e) {
    c.kind = "image_unreadable";
    c.detail = e.what();
  }
  return c;
}

}  // namespace

DataScreen screen_training_records(std::vector<data::Record> records, const tokenizer::Tokenizer& tok,
                                   const ScreenOptions& opt) {
  DataScreen out;
  out.total = static_cast<int64_t>(records.size());
  const auto image_pad = tok.token_to_id("<|image_pad|>");
  MEDR1_CHECK(image_pad.has_value(), "data screen: the tokenizer has no <|image_pad|> token");

  // Images first, on every core (decoding dominates); results in record order.
  std::vector<ImageCheck> images(records.size());
  std::unique_ptr<data::ProgressBar> bar;
  if (opt.progress) bar = std::make_unique<data::ProgressBar>("data screen", out.total);
  {
    std::atomic<size_t> next{0};
    std::atomic<int64_t> done{0};
    const size_t n_threads =
        std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(at::get_num_threads()), records.size()));
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < records.size();) {
        if (!records[i].image.empty()) images[i] = check_image(records[i], opt.ipc);
        done.fetch_add(1);
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (bar) {
      bar->advance(done.load());
      bar->finish();
    }
  }

  for (size_t i = 0; i < records.size(); ++i) {
    data::Record& r = records[i];
    std::vector<DataIssue> found;
    auto issue = [&](std::string kind, std::string detail, bool skip) {
      DataIssue d;
      d.index = r.index;
      d.source_file = r.source_file;
      d.file_index = r.file_index;
      d.image = r.image;
      d.kind = std::move(kind);
      d.detail = std::move(detail);
      d.skipped = skip;
      found.push_back(std::move(d));
    };
    const std::string letters = option_letters(r.problem);
    if (!r.solution) {
      issue("no_solution", "the record has no \"solution\" field", true);
    } else if (opt.check_answers) {
      const auto answer = data::extract_option_answer(*r.solution);
      if (!answer) {
        issue("solution_unparseable",
              "solution '" + *r.solution + "' has no <answer> X </answer>; the accuracy reward compares the whole "
              "solution text",
              false);
      } else if (!letters.empty() && answer->size() == 1 && letters.find((*answer)[0]) == std::string::npos) {
        issue("answer_not_in_options", "solution answer '" + *answer + "' is not among the options " + letters, true);
      }
    }
    if (letters.size() == 1) issue("one_option", "the problem lists one option (" + letters + ")", false);
    const ImageCheck& im = images[i];
    if (!im.kind.empty()) issue(im.kind, im.detail, true);
    if (im.kind.empty() && opt.max_prompt_length > 0) {
      // The prompt as the rollout builds it: the chat template with one <|image_pad|>, expanded to the
      // image's merged tokens; Med-R1 keeps its last max_prompt_length tokens.
      const std::vector<int32_t> ids = tok.encode(build_train_prompt(r.problem, opt.mode, !r.image.empty()));
      const auto pad_at = std::find(ids.begin(), ids.end(), *image_pad);
      const bool with_image = pad_at != ids.end();
      const int64_t length = static_cast<int64_t>(ids.size()) + (with_image ? im.tokens - 1 : 0);
      if (length > opt.max_prompt_length) {
        const int64_t cut = length - opt.max_prompt_length;
        const int64_t first_image_token = with_image ? static_cast<int64_t>(pad_at - ids.begin()) : length;
        const std::string what = "prompt of " + std::to_string(length) + " tokens (" + std::to_string(im.tokens) +
                                 " image tokens) > max_prompt_length " + std::to_string(opt.max_prompt_length);
        if (with_image && cut > first_image_token)
          issue("prompt_too_long",
                what + ": truncation would cut its image tokens (raise max_prompt_length or lower max_pixels)", true);
        else
          issue("prompt_truncated", what + ": its first " + std::to_string(cut) + " text tokens are cut", false);
      }
    }
    bool skip = false;
    for (const DataIssue& d : found) {
      skip = skip || d.skipped;
      (d.skipped ? out.skipped : out.flagged)[d.kind] += 1;
      out.issues.push_back(d);
    }
    if (!skip) out.kept.push_back(std::move(r));
  }
  return out;
}

void write_data_screen(const DataScreen& s, const std::string& output_dir) {
  std::string lines;
  for (const DataIssue& d : s.issues) lines += d.to_json().dump() + "\n";
  io::write_file_atomic((fs::path(output_dir) / "data_issues.jsonl").string(), lines);
  io::write_json_atomic((fs::path(output_dir) / "data_summary.json").string(), s.summary());
}

}  // namespace medr1::rl
