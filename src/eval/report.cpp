// Evaluation summary, markdown table and SVG heatmap (report.h).
#include "medr1/eval/report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

#include "medr1/core/error.h"

namespace medr1::eval {

using nlohmann::json;

namespace {

constexpr const char* kMissing = "\xE2\x80\x94";  // "—"

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string md_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

// Number of code points (an approximation of the rendered width of a label).
size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

struct Rgb {
  double r, g, b;
};

// Viridis sampled at 0, .25, .5, .75, 1: perceptually even and readable for colour-blind readers.
constexpr std::array<Rgb, 5> kViridis = {
    {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
constexpr std::array<const char*, 5> kViridisHex = {"#440154", "#3b528b", "#21918c", "#5ec962",
                                                    "#fde725"};

Rgb viridis(double t) {
  t = std::clamp(t, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  const Rgb& a = kViridis[i];
  const Rgb& b = kViridis[i + 1];
  return {a.r + (b.r - a.r) * f, a.g + (b.g - a.g) * f, a.b + (b.b - a.b) * f};
}

std::string hex(const Rgb& c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::lround(c.r)),
                static_cast<int>(std::lround(c.g)), static_cast<int>(std::lround(c.b)));
  return buf;
}

// White text on the dark half of the scale, near-black on the light half.
const char* text_colour(const Rgb& c) {
  const double lum = (0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b) / 255.0;
  return lum < 0.45 ? "#ffffff" : "#111111";
}

int64_t get_int(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  MEDR1_CHECK(it != j.end() && it->is_number_integer(), where, ": ", key,
              ": missing or not integer");
  return it->get<int64_t>();
}

std::string get_str(const json& j, const char* key, const std::string& where, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    MEDR1_CHECK(!required, where, ": ", key, ": missing");
    return "";
  }
  MEDR1_CHECK(it->is_string(), where, ": ", key, ": expected string");
  return it->get<std::string>();
}

}  // namespace

SummaryEntry summarize(const SplitMetrics& m, std::string output_path) {
  SummaryEntry e;
  e.split = m.name;
  e.split_type = m.type;
  e.setting = m.setting;
  e.accuracy = m.accuracy();
  e.num_samples = m.num_samples;
  e.num_correct = m.num_correct;
  e.num_unparseable = m.num_unparseable;
  e.num_errors = m.num_errors;
  e.output_path = std::move(output_path);
  return e;
}

std::string setting_name(std::string_view attack, bool think) {
  return std::string(attack) + (think ? "/think" : "/nothink");
}

std::string result_file_name(std::string_view split, std::string_view setting) {
  std::string s = std::string(split) + "_" + std::string(setting);
  for (char& c : s)
    if (c == '/' || c == '\0') c = '_';
  return s + ".json";
}

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += "\xEF\xBF\xBD";
        else
          out += ch;
    }
  }
  return out;
}

void EvalReport::add(SummaryEntry e) {
  for (auto& x : entries_) {
    if (x.split == e.split && x.setting == e.setting) {
      x = std::move(e);
      return;
    }
  }
  entries_.push_back(std::move(e));
}

std::vector<std::string> EvalReport::splits() const {
  std::vector<std::string> v;
  for (const auto& e : entries_)
    if (std::find(v.begin(), v.end(), e.split) == v.end()) v.push_back(e.split);
  return v;
}

std::vector<std::string> EvalReport::settings() const {
  std::vector<std::string> v;
  for (const auto& s : setting_order_)
    for (const auto& e : entries_)
      if (e.setting == s && std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
  for (const auto& e : entries_)
    if (std::find(v.begin(), v.end(), e.setting) == v.end()) v.push_back(e.setting);
  return v;
}

std::optional<SummaryEntry> EvalReport::find(std::string_view split,
                                             std::string_view setting) const {
  for (const auto& e : entries_)
    if (e.split == split && e.setting == setting) return e;
  return std::nullopt;
}

std::optional<double> EvalReport::macro_accuracy(std::string_view setting) const {
  double sum = 0;
  int n = 0;
  for (const auto& e : entries_)
    if (e.setting == setting) {
      sum += e.accuracy;
      ++n;
    }
  if (n == 0) return std::nullopt;
  return sum / n;
}

std::optional<double> EvalReport::micro_accuracy(std::string_view setting) const {
  int64_t c = 0, n = 0;
  bool any = false;
  for (const auto& e : entries_)
    if (e.setting == setting) {
      c += e.num_correct;
      n += e.num_samples;
      any = true;
    }
  if (!any) return std::nullopt;
  return n > 0 ? static_cast<double>(c) / n * 100.0 : 0.0;
}

json EvalReport::to_json() const {
  json splits_j = json::array();
  for (const auto& s : splits()) {
    std::string type;
    for (const auto& e : entries_)
      if (e.split == s) type = e.split_type;
    splits_j.push_back({{"name", s}, {"type", type}});
  }
  json res = json::array();
  for (const auto& e : entries_) {
    res.push_back({{"split", e.split},
                   {"split_type", e.split_type},
                   {"setting", e.setting},
                   {"accuracy", e.accuracy},
                   {"num_samples", e.num_samples},
                   {"num_correct", e.num_correct},
                   {"num_unparseable", e.num_unparseable},
                   {"num_errors", e.num_errors},
                   {"output_path", e.output_path}});
  }
  return {{"meta", meta}, {"settings", settings()}, {"splits", splits_j}, {"results", res}};
}

EvalReport EvalReport::from_json(const json& j, const std::string& where) {
  MEDR1_CHECK(j.is_object(), where, ": expected object");
  EvalReport r;
  if (auto it = j.find("meta"); it != j.end() && it->is_object()) r.meta = *it;
  if (auto it = j.find("settings"); it != j.end()) {
    MEDR1_CHECK(it->is_array(), where, ": settings: expected array");
    for (const auto& s : *it) {
      MEDR1_CHECK(s.is_string(), where, ": settings: expected strings");
      r.setting_order_.push_back(s.get<std::string>());
    }
  }
  auto res = j.find("results");
  MEDR1_CHECK(res != j.end() && res->is_array(), where, ": results: missing or not array");
  for (size_t i = 0; i < res->size(); ++i) {
    const json& x = (*res)[i];
    const std::string w = where + ": results[" + std::to_string(i) + "]";
    MEDR1_CHECK(x.is_object(), w, ": expected object");
    SummaryEntry e;
    e.split = get_str(x, "split", w, true);
    e.split_type = get_str(x, "split_type", w, false);
    e.setting = get_str(x, "setting", w, true);
    auto acc = x.find("accuracy");
    MEDR1_CHECK(acc != x.end() && acc->is_number(), w, ": accuracy: missing or not number");
    e.accuracy = acc->get<double>();
    e.num_samples = get_int(x, "num_samples", w);
    e.num_correct = get_int(x, "num_correct", w);
    e.num_unparseable = x.contains("num_unparseable") ? get_int(x, "num_unparseable", w) : 0;
    e.num_errors = x.contains("num_errors") ? get_int(x, "num_errors", w) : 0;
    e.output_path = get_str(x, "output_path", w, false);
    r.add(std::move(e));
  }
  return r;
}

std::string EvalReport::to_markdown(const std::string& title) const {
  const auto rows = splits();
  const auto cols = settings();
  std::string md = "# " + md_escape(title) + "\n\n";
  if (meta.is_object() && !meta.empty()) {
    for (auto it = meta.begin(); it != meta.end(); ++it) {
      const std::string v =
          it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
      md += "- " + md_escape(it.key()) + ": `" + v + "`\n";
    }
    md += "\n";
  }
  md += "Accuracy (%) per split; " + std::string(kMissing) + " = not run.\n\n| Split | N |";
  for (const auto& c : cols) md += " " + md_escape(c) + " |";
  md += "\n|---|---:|";
  for (size_t i = 0; i < cols.size(); ++i) md += "---:|";
  md += "\n";
  for (const auto& r : rows) {
    int64_t n = 0;
    for (const auto& e : entries_)
      if (e.split == r) n = std::max(n, e.num_samples);
    md += "| " + md_escape(r) + " | " + std::to_string(n) + " |";
    for (const auto& c : cols) {
      auto e = find(r, c);
      md += ' ';
      md += e ? fmt("%.2f", e->accuracy) : std::string(kMissing);
      md += " |";
    }
    md += "\n";
  }
  if (rows.size() > 1) {
    md += "| **Mean (macro)** | |";
    for (const auto& c : cols) {
      auto v = macro_accuracy(c);
      md += ' ';
      md += v ? fmt("%.2f", *v) : std::string(kMissing);
      md += " |";
    }
    md += "\n| **All (micro)** | |";
    for (const auto& c : cols) {
      auto v = micro_accuracy(c);
      md += ' ';
      md += v ? fmt("%.2f", *v) : std::string(kMissing);
      md += " |";
    }
    md += "\n";
  }
  md +=
      "\n## Details\n\n| Split | Setting | Correct / N | Accuracy | Unparseable | Errors | "
      "Result file |\n|---|---|---:|---:|---:|---:|---|\n";
  for (const auto& r : rows)
    for (const auto& c : cols) {
      auto e = find(r, c);
      if (!e) continue;
      const double unp = e->num_samples > 0
                             ? static_cast<double>(e->num_unparseable) / e->num_samples * 100.0
                             : 0.0;
      md += "| " + md_escape(r) + " | " + md_escape(c) + " | " + std::to_string(e->num_correct) +
            " / " + std::to_string(e->num_samples) + " | " + fmt("%.2f", e->accuracy) + " | " +
            std::to_string(e->num_unparseable) + " (" + fmt("%.1f", unp) + "%) | " +
            std::to_string(e->num_errors) + " | " +
            (e->output_path.empty() ? std::string(kMissing) : md_escape(e->output_path)) + " |\n";
    }
  return md;
}

std::string EvalReport::to_svg_heatmap(const std::string& title) const {
  const auto rows = splits();
  const auto cols = settings();
  const bool with_mean = rows.size() > 1;
  // Layout in px; label widths estimated from code points (DejaVu Sans ~0.6 em per glyph).
  const double fs = 13.0, char_w = 0.62 * fs, margin = 16.0, cell_h = 30.0;
  size_t row_chars = 12;  // "Mean (macro)"
  for (const auto& r : rows) row_chars = std::max(row_chars, utf8_length(r));
  size_t col_chars = 5;
  for (const auto& c : cols) col_chars = std::max(col_chars, utf8_length(c));
  const double label_w = std::ceil(row_chars * char_w) + 14.0;
  const double cell_w = std::max(72.0, std::ceil(col_chars * char_w) + 16.0);
  const double title_h = 30.0, header_h = 26.0;
  const double grid_x = margin + label_w, grid_y = margin + title_h + header_h;
  const size_t n_rows = rows.size() + (with_mean ? 1 : 0);
  const double grid_w = cell_w * static_cast<double>(cols.size());
  const double grid_h = cell_h * static_cast<double>(n_rows) + (with_mean ? 6.0 : 0.0);
  const double legend_y = grid_y + grid_h + 22.0, legend_w = std::max(240.0, grid_w);
  const double legend_h = 14.0;
  const double width = std::max(grid_x + grid_w, margin + label_w + legend_w) + margin;
  const double height = legend_y + legend_h + 44.0;

  std::string s;
  auto num = [](double v) { return fmt("%.1f", v); };
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" +
       num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) +
       "\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"" + num(fs) +
       "\">\n";
  s += "<defs><linearGradient id=\"scale\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">";
  for (size_t i = 0; i < kViridisHex.size(); ++i)
    s += "<stop offset=\"" + fmt("%.2f", i / 4.0) + "\" stop-color=\"" + kViridisHex[i] + "\"/>";
  s += "</linearGradient></defs>\n";
  s += "<rect x=\"0\" y=\"0\" width=\"" + num(width) + "\" height=\"" + num(height) +
       "\" fill=\"#ffffff\"/>\n";
  s += "<text x=\"" + num(margin) + "\" y=\"" + num(margin + 18) +
       "\" font-size=\"16\" font-weight=\"bold\">" + xml_escape(title) + "</text>\n";
  // Column headers.
  for (size_t c = 0; c < cols.size(); ++c) {
    const double x = grid_x + cell_w * (c + 0.5);
    s += "<text x=\"" + num(x) + "\" y=\"" + num(grid_y - 8) +
         "\" text-anchor=\"middle\" font-weight=\"bold\">" + xml_escape(cols[c]) + "</text>\n";
  }
  auto cell = [&](double y, const std::string& label, const std::vector<std::optional<double>>& v,
                  bool bold) {
    s += "<text x=\"" + num(grid_x - 8) + "\" y=\"" + num(y + cell_h / 2 + fs * 0.35) +
         "\" text-anchor=\"end\"" + (bold ? " font-weight=\"bold\"" : "") + ">" +
         xml_escape(label) + "</text>\n";
    for (size_t c = 0; c < cols.size(); ++c) {
      const double x = grid_x + cell_w * c;
      std::string fill = "#e6e6e6", tc = "#555555", text = kMissing;
      if (v[c]) {
        const Rgb col = viridis(*v[c] / 100.0);
        fill = hex(col);
        tc = text_colour(col);
        text = fmt("%.1f", *v[c]);
      }
      s += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(cell_w) +
           "\" height=\"" + num(cell_h) + "\" fill=\"" + fill +
           "\" stroke=\"#ffffff\" stroke-width=\"2\"/>\n";
      s += "<text x=\"" + num(x + cell_w / 2) + "\" y=\"" + num(y + cell_h / 2 + fs * 0.35) +
           "\" text-anchor=\"middle\" fill=\"" + tc + "\"" + (bold ? " font-weight=\"bold\"" : "") +
           ">" + text + "</text>\n";
    }
  };
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<std::optional<double>> v;
    for (const auto& c : cols) {
      auto e = find(rows[r], c);
      v.push_back(e ? std::optional<double>(e->accuracy) : std::nullopt);
    }
    cell(grid_y + cell_h * r, rows[r], v, false);
  }
  if (with_mean) {
    std::vector<std::optional<double>> v;
    for (const auto& c : cols) v.push_back(macro_accuracy(c));
    const double y = grid_y + cell_h * rows.size() + 6.0;
    s += "<line x1=\"" + num(margin) + "\" x2=\"" + num(grid_x + grid_w) + "\" y1=\"" + num(y - 3) +
         "\" y2=\"" + num(y - 3) + "\" stroke=\"#999999\"/>\n";
    cell(y, "Mean (macro)", v, true);
  }
  // Legend: the 0-100 scale with ticks, and the missing-cell swatch.
  const double lx = grid_x;
  s += "<text x=\"" + num(lx - 8) + "\" y=\"" + num(legend_y + legend_h - 2) +
       "\" text-anchor=\"end\">Accuracy (%)</text>\n";
  s += "<rect x=\"" + num(lx) + "\" y=\"" + num(legend_y) + "\" width=\"" + num(legend_w) +
       "\" height=\"" + num(legend_h) + "\" fill=\"url(#scale)\" stroke=\"#666666\"/>\n";
  for (int t = 0; t <= 100; t += 25) {
    const double x = lx + legend_w * t / 100.0;
    s += "<line x1=\"" + num(x) + "\" x2=\"" + num(x) + "\" y1=\"" + num(legend_y + legend_h) +
         "\" y2=\"" + num(legend_y + legend_h + 4) + "\" stroke=\"#666666\"/>\n";
    s += "<text x=\"" + num(x) + "\" y=\"" + num(legend_y + legend_h + 17) +
         "\" text-anchor=\"middle\" font-size=\"11\">" + std::to_string(t) + "</text>\n";
  }
  const double sy = legend_y + legend_h + 24;
  s += "<rect x=\"" + num(lx) + "\" y=\"" + num(sy) +
       "\" width=\"14\" height=\"12\" "
       "fill=\"#e6e6e6\" stroke=\"#999999\"/>\n";
  s += "<text x=\"" + num(lx + 20) + "\" y=\"" + num(sy + 10) + "\" font-size=\"11\">" +
       std::string(kMissing) + " not run</text>\n";
  s += "</svg>\n";
  return s;
}

void EvalReport::write_all(const std::string& dir, const std::string& title) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  MEDR1_CHECK(!ec, dir, ": cannot create folder (", ec.message(), ")");
  auto put = [&](const std::string& name, const std::string& text) {
    const std::string p = (fs::path(dir) / name).string();
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    MEDR1_CHECK(out.good(), p, ": cannot open for writing");
    out << text;
    out.close();
    MEDR1_CHECK(!out.fail(), p, ": write failed");
  };
  write_json_atomic((fs::path(dir) / "summary.json").string(), to_json());
  put("report.md", to_markdown(title));
  put("accuracy_heatmap.svg", to_svg_heatmap(title + ": accuracy (%)"));
}

namespace fs = std::filesystem;

std::string output_dir_for_output_path(const std::string& output_path) {
  MEDR1_CHECK(!output_path.empty(), "--output_path: empty");
  const fs::path p(output_path);
  if (p.extension() == ".json") return (p.parent_path() / p.stem()).string();
  return output_path + "_results";
}

void write_single_result(const EvalReport& report, const std::string& output_path) {
  const auto& entries = report.entries();
  MEDR1_CHECK(entries.size() == 1, "--output_path ", output_path,
              ": needs exactly one split and one setting (attack x ", "template), this run has ",
              entries.size(), " results; read them in the results folder instead");
  const std::string& src = entries[0].output_path;
  MEDR1_CHECK(!src.empty() && fs::exists(src), "--output_path ", output_path,
              ": the split's result JSON is missing");
  std::ifstream in(src);
  json j = json::parse(in);
  // AdvMed-R1's names beside Med-R1's "results": detailed_results[{model_output, model_answer, ground_truth,
  // gt_answer, correct}].
  if (j.contains("results") && j["results"].is_array()) {
    json detailed = json::array();
    for (const json& r : j["results"])
      detailed.push_back({{"model_output", r.value("model_output", "")},
                          {"model_answer", r.contains("extracted_answer") ? r["extracted_answer"] : json(nullptr)},
                          {"ground_truth", r.value("ground_truth", "")},
                          {"gt_answer", r.contains("gt_answer") ? r["gt_answer"] : json(nullptr)},
                          {"correct", r.value("correct", false)}});
    j["detailed_results"] = std::move(detailed);
  }
  const fs::path out(output_path);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  write_json_atomic(output_path, j);
}

}  // namespace medr1::eval
