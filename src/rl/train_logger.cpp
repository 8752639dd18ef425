// The run's logs (train_logger.h): metrics.jsonl, TensorBoard events, completions.jsonl and the SVG
// curves.
#include "medr1/rl/train_logger.h"

#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "io/atomic_file.h"
#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/io/svg_plot.h"
#include "medr1/io/tfevents.h"

namespace medr1::rl {

namespace fs = std::filesystem;

namespace {

void write_atomic(const std::string& path, const std::string& text) {
  io::detail::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

// One markdown table of the step's completions (TensorBoard's text plugin renders markdown; HTML
// characters are written as entities so that the tags of a completion show as text).
std::string completions_markdown(const std::vector<nlohmann::json>& rows) {
  auto cell = [](std::string s) {
    std::string o;
    for (char c : s) {
      if (c == '|')
        o += "\\|";
      else if (c == '<')  // as text: TensorBoard's sanitiser would drop <answer> / <think> as
                          // unknown HTML
        o += "&lt;";
      else if (c == '>')
        o += "&gt;";
      else if (c == '&')
        o += "&amp;";
      else if (c == '\n' || c == '\r')
        o += ' ';
      else
        o += c;
    }
    return o;
  };
  auto num = [](const nlohmann::json& v) {
    if (!v.is_number()) return std::string("nan");
    std::ostringstream s;
    s << v.get<double>();
    return s.str();
  };
  std::string md = "| prompt | image | completion | reward | advantage |\n|---|---|---|---|---|\n";
  for (const auto& r : rows)
    md += "| " + std::to_string(r.value("prompt_index", int64_t{0})) + " | " +
          cell(r.value("image", "")) + " | " + cell(r.value("completion", "")) + " | " +
          num(r.value("reward", nlohmann::json())) + " | " +
          num(r.value("advantage", nlohmann::json())) + " |\n";
  return md;
}

// A completions.jsonl row with its keys in reading order (step, prompt, ..., advantage), then any
// others.
nlohmann::ordered_json in_row_order(const nlohmann::json& row) {
  static const char* const kOrder[] = {"step",    "prompt_index", "generation", "image",
                                       "problem", "solution",     "completion", "rewards",
                                       "reward",  "advantage"};
  nlohmann::ordered_json o;
  for (const char* k : kOrder)
    if (row.contains(k)) o[k] = row[k];
  for (auto it = row.begin(); it != row.end(); ++it)
    if (!o.contains(it.key())) o[it.key()] = *it;
  return o;
}

}  // namespace

ReportTo parse_report_to(const std::vector<std::string>& names) {
  ReportTo r;
  bool none = false;
  for (const std::string& n : names) {
    if (n == "none")
      none = true;
    else if (n == "tensorboard")
      r.tensorboard = true;
    else if (n == "all")
      r.tensorboard = true;  // every integration this build has
    else if (n == "wandb")
      r.tensorboard = r.wandb_requested = true;
    else
      MEDR1_CHECK(false, "report_to: unknown integration '", n,
                  "' (expected none, tensorboard, wandb or all)");
  }
  MEDR1_CHECK(!none || names.size() == 1,
              "report_to: 'none' cannot be combined with other integrations");
  return r;
}

size_t truncate_jsonl_after_step(const std::string& path, int64_t max_step) {
  if (!fs::exists(path)) return 0;
  std::ifstream in(path);
  std::string line, kept;
  size_t n = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      continue;
    if (j["step"].get<int64_t>() > max_step) continue;
    kept += line + "\n";
    ++n;
  }
  in.close();
  write_atomic(path, kept);
  return n;
}

std::vector<std::string> write_training_plots(const std::string& output_dir,
                                              const std::vector<nlohmann::json>& history,
                                              const std::string& run_name) {
  const fs::path dir = fs::path(output_dir) / "plots";
  fs::create_directories(dir);
  auto series_of = [&](const std::string& key, bool right = false) {
    io::PlotSeries s;
    s.name = key;
    s.right_axis = right;
    for (const auto& r : history) {
      if (!r.contains("step") || !r.contains(key)) continue;
      s.x.push_back(r["step"].get<double>());
      s.y.push_back(r[key].is_number() ? r[key].get<double>()
                                       : std::numeric_limits<double>::quiet_NaN());
    }
    return s;
  };
  auto has = [&](const std::string& key) {
    for (const auto& r : history)
      if (r.contains(key)) return true;
    return false;
  };
  const std::string prefix = run_name.empty() ? std::string() : run_name + ": ";
  std::vector<std::string> written;
  auto plot = [&](const std::string& file, const std::string& title, const std::string& y_label,
                  std::vector<io::PlotSeries> series, double smoothing = 0.6,
                  const std::string& y2_label = "") {
    io::PlotSpec spec;
    spec.title = prefix + title;
    spec.x_label = "optimizer step";
    spec.y_label = y_label;
    spec.y2_label = y2_label;
    spec.smoothing = smoothing;
    const std::string path = (dir / file).string();
    io::write_line_chart_svg(path, spec, series);
    written.push_back(path);
  };
  std::vector<std::string> reward_keys;  // rewards/<name>, in the order of the first record
  if (!history.empty())
    for (auto it = history.front().begin(); it != history.front().end(); ++it)
      if (it.key().rfind("rewards/", 0) == 0) reward_keys.push_back(it.key());
  if (has("reward"))
    plot("reward.svg", "reward", "reward (mean over completions)", {series_of("reward")});
  std::set<std::string> reward_files;
  for (const auto& k : reward_keys) {
    // A reward's name can hold any text (external:<command> has spaces and slashes): the file name
    // keeps [A-Za-z0-9._-] of at most 80 bytes, the rest becomes '_', and a clash gets a number.
    std::string stem;
    for (const char ch : k.substr(8).substr(0, 80))
      stem += std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-' ? ch : '_';
    std::string file = "rewards_" + stem + ".svg";
    for (int n = 2; !reward_files.insert(file).second; ++n)
      file = "rewards_" + stem + "_" + std::to_string(n) + ".svg";
    plot(file, k, k.substr(8) + " reward (mean over completions)", {series_of(k)});
  }
  if (has("reward") ||
      !reward_keys.empty()) {  // Med-R1's figure: the rewards and the completion length vs step
    std::vector<io::PlotSeries> s;
    for (const auto& k : reward_keys) s.push_back(series_of(k));
    if (has("reward")) s.push_back(series_of("reward"));
    s.push_back(series_of("completion_length", /*right=*/true));
    plot("rewards_and_lengths.svg", "rewards and completion length",
         "reward (mean over completions)", s, 0.6, "completion length (tokens)");
  }
  plot("completion_length.svg", "completion length", "completion length (tokens, mean)",
       {series_of("completion_length")});
  if (has("kl"))
    plot("kl.svg", "KL to the reference model", "KL (k3 estimate, nats per token)",
         {series_of("kl")});
  if (has("entropy"))
    plot("entropy.svg", "token entropy (top_entropy_quantile)", "entropy (nats per token, mean)",
         {series_of("entropy")});
  plot("loss.svg", "loss", "loss (per optimizer step)", {series_of("loss")});
  plot("grad_norm.svg", "gradient norm", "gradient L2 norm (before clipping)",
       {series_of("grad_norm")});
  plot("learning_rate.svg", "learning rate", "learning rate", {series_of("learning_rate")}, 0.0);
  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + io::xml_escape(prefix) +
      "training curves</title></head>\n<body style=\"font-family: sans-serif\">\n<h2>" +
      io::xml_escape(prefix) + "training curves (" + std::to_string(history.size()) +
      " logged steps)</h2>\n";
  for (const auto& p : written) html += "<img src=\"" + fs::path(p).filename().string() + "\">\n";
  html += "</body></html>\n";
  write_atomic((dir / "index.html").string(), html);
  written.push_back((dir / "index.html").string());
  return written;
}

TrainLogger::TrainLogger(const GRPOConfig& cfg, bool is_main,
                         const std::vector<nlohmann::json>& history, int64_t resume_step)
    : cfg_(cfg), is_main_(is_main) {
  metrics_path_ = (fs::path(cfg.output_dir) / "metrics.jsonl").string();
  completions_path_ = (fs::path(cfg.output_dir) / "completions.jsonl").string();
  if (!is_main_) return;
  {  // metrics.jsonl = the history up to the resume point (drops lines of steps after the
     // checkpoint)
    std::ofstream f(metrics_path_, std::ios::trunc);
    for (const auto& r : history) f << r.dump() << "\n";
  }
  // completions.jsonl: the rows of the steps up to the resume point (none on a fresh run); the
  // resumed run appends the later steps again, so no step is there twice.
  if (cfg.log_completions || fs::exists(completions_path_)) {
    const size_t kept = truncate_jsonl_after_step(completions_path_, resume_step);
    if (resume_step > 0 && kept > 0)
      spdlog::info("{}: kept {} rows up to step {}", completions_path_, kept, resume_step);
  }
  const ReportTo rt = parse_report_to(cfg.report_to);
  if (rt.wandb_requested)
    spdlog::warn(
        "report_to wandb: Weights & Biases is not built into medr1; metrics go to {} and "
        "TensorBoard "
        "event files in {} (upload them with `wandb sync --sync-tensorboard {}`)",
        metrics_path_, cfg.output_dir, cfg.output_dir);
  if (rt.tensorboard) {
    tb_ = std::make_unique<io::EventFileWriter>(cfg.output_dir);
    tb_->add_session_start(resume_step + 1);  // TensorBoard drops older files' events from here on
    tb_->flush();
    event_file_ = tb_->path();
    spdlog::info("TensorBoard events -> {} (tensorboard --logdir {})", event_file_, cfg.output_dir);
  }
}

TrainLogger::~TrainLogger() = default;

void TrainLogger::log(const nlohmann::json& record,
                      const std::vector<nlohmann::json>& completions) {
  if (!is_main_) return;
  const int64_t step = record.at("step").get<int64_t>();
  std::ofstream(metrics_path_, std::ios::app) << record.dump() << "\n";  // closed (flushed) at once
  const size_t cap = cfg_.num_completions_to_print > 0
                         ? static_cast<size_t>(cfg_.num_completions_to_print)
                         : completions.size();
  const std::vector<nlohmann::json> rows(
      completions.begin(),
      completions.begin() + static_cast<std::ptrdiff_t>(std::min(cap, completions.size())));
  if (cfg_.log_completions && !rows.empty()) {
    std::ofstream f(completions_path_, std::ios::app);
    for (const auto& r : rows)
      f << in_row_order(r).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
        << "\n";
  }
  if (tb_) {
    for (auto it = record.begin(); it != record.end(); ++it)
      if (it.key() != "step" && it->is_number()) tb_->add_scalar(it.key(), it->get<double>(), step);
    if (cfg_.log_completions && !rows.empty())
      tb_->add_text("completions", completions_markdown(rows), step);
    tb_->flush();
  }
}

void TrainLogger::write_plots(const std::vector<nlohmann::json>& history) {
  if (!is_main_) return;
  write_training_plots(cfg_.output_dir, history, cfg_.run_name);
}

}  // namespace medr1::rl
