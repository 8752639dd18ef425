// Evaluation report: markdown content, summary JSON round trip, SVG well-formedness and values.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/eval/report.h"

using namespace medr1::eval;

namespace {
SummaryEntry entry(const std::string& split, const std::string& setting, int64_t correct,
                   int64_t n) {
  SummaryEntry e;
  e.split = split;
  e.split_type = "modality";
  e.setting = setting;
  e.num_correct = correct;
  e.num_samples = n;
  e.accuracy = n ? 100.0 * correct / n : 0.0;
  e.output_path = result_file_name(split, setting);
  return e;
}

EvalReport sample() {
  EvalReport r;
  r.meta = {{"model_path", "ckpt/Qwen2-VL-2B"}};
  r.set_setting_order({"clean/think", "fgsm/think", "pgd/think"});
  r.add(entry("CT(Computed Tomography)", "pgd/think", 10, 40));
  r.add(entry("CT(Computed Tomography)", "clean/think", 30, 40));
  r.add(entry("X-Ray & <Chest>", "clean/think", 1, 2));
  r.add(entry("X-Ray & <Chest>", "fgsm/think", 0, 2));
  return r;
}

// Minimal XML well-formedness check: balanced tags, no raw '&' outside entities, no '<' in text.
bool well_formed(const std::string& s, std::string* why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '<') {
      size_t j = s.find('>', i);
      if (j == std::string::npos) return *why = "unterminated tag", false;
      std::string tag = s.substr(i + 1, j - i - 1);
      if (tag[0] == '?') {
      } else if (tag[0] == '/') {
        std::string name = tag.substr(1);
        if (stack.empty() || stack.back() != name) return *why = "mismatched </" + name + ">", false;
        stack.pop_back();
      } else if (tag.back() != '/') {
        stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
      }
      if (tag.find('<') != std::string::npos) return *why = "'<' inside a tag", false;
      i = j + 1;
    } else if (s[i] == '&') {
      size_t j = s.find(';', i);
      std::string ent = s.substr(i, j - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;")
        return *why = "bad entity " + ent, false;
      ++i;
    } else {
      ++i;
    }
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}
}  // namespace

TEST(Report, NamesAndEscaping) {
  EXPECT_EQ(setting_name("fgsm", true), "fgsm/think");
  EXPECT_EQ(setting_name("clean", false), "clean/nothink");
  EXPECT_EQ(result_file_name("CT(Computed Tomography)", "clean/think"),
            "CT(Computed Tomography)_clean_think.json");
  EXPECT_EQ(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
  EXPECT_EQ(xml_escape(std::string("x\x01y")), "x\xEF\xBF\xBDy");
}

TEST(Report, OrderAndAggregates) {
  auto r = sample();
  EXPECT_EQ(r.splits(), (std::vector<std::string>{"CT(Computed Tomography)", "X-Ray & <Chest>"}));
  EXPECT_EQ(r.settings(), (std::vector<std::string>{"clean/think", "fgsm/think", "pgd/think"}));
  EXPECT_DOUBLE_EQ(*r.macro_accuracy("clean/think"), (75.0 + 50.0) / 2);
  EXPECT_DOUBLE_EQ(*r.micro_accuracy("clean/think"), 31.0 / 42.0 * 100.0);
  EXPECT_FALSE(r.macro_accuracy("clean/nothink").has_value());
  r.add(entry("X-Ray & <Chest>", "fgsm/think", 2, 2));  // replaces the cell
  EXPECT_EQ(r.entries().size(), 4u);
  EXPECT_DOUBLE_EQ(r.find("X-Ray & <Chest>", "fgsm/think")->accuracy, 100.0);
}

TEST(Report, MarkdownTable) {
  const std::string md = sample().to_markdown("Demo");
  EXPECT_NE(md.find("# Demo\n"), std::string::npos) << md;
  EXPECT_NE(md.find("- model_path: `ckpt/Qwen2-VL-2B`"), std::string::npos) << md;
  EXPECT_NE(md.find("| Split | N | clean/think | fgsm/think | pgd/think |"), std::string::npos) << md;
  EXPECT_NE(md.find("| CT(Computed Tomography) | 40 | 75.00 | \xE2\x80\x94 | 25.00 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| X-Ray & <Chest> | 2 | 50.00 | 0.00 | \xE2\x80\x94 |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| **Mean (macro)** | | 62.50 | 0.00 | 25.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| **All (micro)** | | 73.81 | 0.00 | 25.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| CT(Computed Tomography) | clean/think | 30 / 40 | 75.00 |"),
            std::string::npos) << md;
  EvalReport pipe;
  pipe.add(entry("a|b", "clean/think", 1, 1));
  EXPECT_NE(pipe.to_markdown().find("| a\\|b | 1 | 100.00 |"), std::string::npos);
}

TEST(Report, SummaryJsonRoundTrip) {
  auto r = sample();
  auto j = r.to_json();
  EXPECT_EQ(j.at("settings").size(), 3u);
  EXPECT_EQ(j.at("splits")[1].at("name"), "X-Ray & <Chest>");
  EXPECT_EQ(j.at("results")[0].at("num_correct"), 10);
  auto back = EvalReport::from_json(j);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_THROW(EvalReport::from_json({{"results", {{{"split", "a"}}}}}), medr1::Error);
}

TEST(Report, SvgHeatmapWellFormedWithValues) {
  const std::string svg = sample().to_svg_heatmap("Accuracy <demo>");
  std::string why;
  EXPECT_TRUE(well_formed(svg, &why)) << why;
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find(">75.0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">25.0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">50.0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">62.5</text>"), std::string::npos);  // macro mean row
  EXPECT_NE(svg.find(">X-Ray &amp; &lt;Chest&gt;</text>"), std::string::npos);
  EXPECT_NE(svg.find("Accuracy &lt;demo&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">\xE2\x80\x94</text>"), std::string::npos);  // missing cell
  // 0% is the dark end of viridis with white text; 100% the yellow end with dark text.
  EvalReport ends;
  ends.add(entry("a", "s0", 0, 1));
  ends.add(entry("a", "s1", 1, 1));
  const std::string e = ends.to_svg_heatmap();
  EXPECT_NE(e.find("fill=\"#440154\""), std::string::npos);
  EXPECT_NE(e.find("fill=\"#fde725\""), std::string::npos);
  EXPECT_NE(e.find("fill=\"#ffffff\">0.0</text>"), std::string::npos);
  EXPECT_NE(e.find("fill=\"#111111\">100.0</text>"), std::string::npos);
}

TEST(Report, WriteAllCreatesFiles) {
  namespace fs = std::filesystem;
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "report";
  fs::remove_all(d);
  sample().write_all(d.string(), "Demo");
  for (const char* f : {"summary.json", "report.md", "accuracy_heatmap.svg"})
    EXPECT_TRUE(fs::exists(d / f)) << f;
  std::ifstream in(d / "summary.json");
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("meta").at("model_path"), "ckpt/Qwen2-VL-2B");
}
