// SVG line charts (io/svg_plot.h): tick choice (1-2-5 steps covering the range), tick labels,
// TensorBoard-style debiased EMA, NaN / empty series, escaping, and that the document is
// well-formed XML (checked by a small tag-balance parser here, and by Python's xml.etree from
// $MEDR1_PYTHON when set).
#include "medr1/io/svg_plot.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "io_test_util.h"

namespace medr1::io::test {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(SvgPlot, NiceTicksCoverTheRangeWithOneTwoFiveSteps) {
  EXPECT_EQ(nice_ticks(0, 1, 5).size(), 6u);  // 0, 0.2, ..., 1
  const auto t = nice_ticks(0.13, 0.97, 5);
  ASSERT_GE(t.size(), 2u);
  EXPECT_LE(t.front(), 0.13);
  EXPECT_GE(t.back(), 0.97);
  EXPECT_NEAR(t[1] - t[0], 0.2, 1e-12);
  const auto s = nice_ticks(1, 40, 6);
  EXPECT_DOUBLE_EQ(s.front(), 0);
  EXPECT_DOUBLE_EQ(s.back(), 40);
  EXPECT_DOUBLE_EQ(s[1] - s[0], 10);          // 39 / 6 = 6.5 -> 10
  const auto lr = nice_ticks(1e-6, 1e-6, 5);  // constant learning rate: a small range around it
  EXPECT_LT(lr.front(), 1e-6);
  EXPECT_GT(lr.back(), 1e-6);
  EXPECT_EQ(nice_ticks(kNaN, 1), (std::vector<double>{0, 1}));
  const auto neg = nice_ticks(-0.03, 0.02, 5);
  EXPECT_LE(neg.front(), -0.03);
  EXPECT_GE(neg.back(), 0.02);
  bool has_zero = false;
  for (double v : neg) has_zero |= v == 0.0 && !std::signbit(v);
  EXPECT_TRUE(has_zero);
}

TEST(SvgPlot, TickLabelsUseTheDigitsTheStepNeeds) {
  EXPECT_EQ(format_tick(0.25, 0.05), "0.25");
  EXPECT_EQ(format_tick(0.4, 0.2), "0.4");
  EXPECT_EQ(format_tick(1200, 200), "1200");
  EXPECT_EQ(format_tick(0, 0.2), "0.0");
  EXPECT_EQ(format_tick(1e-6, 1e-7), "1e-06");
}

TEST(SvgPlot, EmaIsDebiasedAndSkipsNaN) {
  const auto e = ema_smooth({1, kNaN, 3}, 0.5);
  EXPECT_DOUBLE_EQ(e[0], 1.0);  // debiased: the first value itself
  EXPECT_TRUE(std::isnan(e[1]));
  EXPECT_DOUBLE_EQ(e[2], (0.5 * 0.5 * 1 + 0.5 * 3) / (1 - 0.25));
  const auto raw = ema_smooth({2, 4}, 0.0);
  EXPECT_DOUBLE_EQ(raw[1], 4.0);
}

// Minimal well-formedness check: every <tag> closed in order, attributes quoted, no raw '&' or '<'
// in text.
bool well_formed(const std::string& s, std::string* why) {
  std::vector<std::string> stack;
  size_t i = s.find("?>");
  if (s.rfind("<?xml", 0) != 0 || i == std::string::npos) return *why = "no XML declaration", false;
  for (i += 2; i < s.size(); ++i) {
    if (s[i] == '&') {
      const size_t semi = s.find(';', i);
      const std::string ent = s.substr(i, semi == std::string::npos ? 0 : semi - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;")
        return *why = "bad entity at " + std::to_string(i), false;
    }
    if (s[i] != '<') continue;
    const size_t end = s.find('>', i);
    if (end == std::string::npos) return *why = "unclosed tag", false;
    const std::string tag = s.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return *why = "'<' inside a tag", false;
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1))
        return *why = "mismatched </" + tag.substr(1) + ">", false;
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end;
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}

void expect_valid_xml(const std::string& svg, const TempDir& tmp) {
  std::string why;
  EXPECT_TRUE(well_formed(svg, &why)) << why;
  const char* py = std::getenv("MEDR1_PYTHON");
  if (py == nullptr || *py == '\0') return;
  const std::string path = tmp.file("chart.svg");
  write_bytes(path, svg);
  const std::string cmd = "'" + std::string(py) +
                          "' -c 'import sys, xml.etree.ElementTree as E; "
                          "r = E.parse(sys.argv[1]).getroot(); assert r.tag.endswith(\"svg\")' '" +
                          path + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "xml.etree rejects " << path;
}

TEST(SvgPlot, ChartHasAxesTitleLegendAndValidXml) {
  TempDir tmp;
  PlotSpec spec;
  spec.title = "reward <total> & \"format\"";
  spec.x_label = "optimizer step";
  spec.y_label = "reward (mean per completion)";
  spec.y2_label = "completion length (tokens)";
  PlotSeries r{"reward", {1, 2, 3, 4, 5}, {0.2, 0.5, kNaN, 0.6, 0.9}, "", false};
  PlotSeries l{"completion_length", {1, 2, 3, 4, 5}, {10, 12, 14, 13, 15}, "", true};
  const std::string svg = line_chart_svg(spec, {r, l});
  expect_valid_xml(svg, tmp);
  EXPECT_NE(svg.find("reward &lt;total&gt; &amp; &quot;format&quot;"), std::string::npos);
  EXPECT_NE(svg.find("optimizer step"), std::string::npos);
  EXPECT_NE(svg.find("completion length (tokens)"), std::string::npos);
  EXPECT_NE(svg.find("EMA (smoothing 0.6)"), std::string::npos);
  // The NaN splits the raw reward line into two pieces (a polyline of 2 points and one of 2), plus
  // the EMA ones: at least 4 polylines for the reward, 2 for the length.
  const std::regex poly("<polyline");
  const auto n =
      std::distance(std::sregex_iterator(svg.begin(), svg.end(), poly), std::sregex_iterator());
  EXPECT_EQ(n, 6);
  EXPECT_NE(svg.find("stroke-opacity=\"0.3\""), std::string::npos);  // raw values drawn faint
}

TEST(SvgPlot, EmptyAndAllNaNSeriesSayNoData) {
  TempDir tmp;
  PlotSpec spec;
  spec.title = "kl";
  for (const std::vector<PlotSeries>& ss :
       {std::vector<PlotSeries>{}, std::vector<PlotSeries>{{"kl", {1, 2}, {kNaN, kNaN}, "", false}},
        std::vector<PlotSeries>{{"kl", {}, {}, "", false}}}) {
    const std::string svg = line_chart_svg(spec, ss);
    expect_valid_xml(svg, tmp);
    EXPECT_NE(svg.find("no data"), std::string::npos);
  }
}

TEST(SvgPlot, SinglePointIsADotAndFileIsWritten) {
  TempDir tmp;
  PlotSpec spec;
  spec.title = "loss";
  const std::string path = tmp.file("loss.svg");
  write_line_chart_svg(path, spec, {{"loss", {1}, {0.5}, "", false}});
  const std::string svg = read_bytes(path);
  expect_valid_xml(svg, tmp);
  EXPECT_NE(svg.find("<circle"), std::string::npos);
  EXPECT_EQ(count_temp_files(tmp.path), 0);
}

}  // namespace
}  // namespace medr1::io::test
