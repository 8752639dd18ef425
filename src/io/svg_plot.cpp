// SVG line charts (svg_plot.h). Layout: a plot area inside fixed margins; x and y (and optional y2)
// mapped linearly from nice_ticks ranges; grid lines at the ticks; raw series as faint polylines,
// EMA as solid ones; legend in the top-right corner of the plot area.
#include "medr1/io/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <sstream>

#include "io/atomic_file.h"

namespace medr1::io {
namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string num(double v) {  // coordinates with 0.1 px precision
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(),
         hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return !(lo <= hi); }
};

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {0.0, 1.0};
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(lo))) {
    const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  target = std::max(target, 2);
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  const double first = std::floor(lo / step + 1e-9) * step;
  const double last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> t;
  for (int i = 0;; ++i) {
    double v = first + i * step;
    if (std::fabs(v) < step * 1e-9) v = 0.0;  // no "-0" or 1e-17 labels
    t.push_back(v);
    if (v >= last - step * 1e-9 || i > 1000) break;
  }
  return t;
}

std::string format_tick(double v, double step) {
  char buf[32];
  const double a = std::fabs(step);
  if (v != 0 && (a < 1e-3 || std::fabs(v) >= 1e6)) {
    const int digits =
        std::max(0, static_cast<int>(std::ceil(std::log10(std::fabs(v) / a) - 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*g", std::max(1, std::min(digits + 1, 6)), v);
    return buf;
  }
  const int decimals = a >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(a) - 1e-9));
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), v);
  return buf;
}

std::vector<double> ema_smooth(const std::vector<double>& y, double weight) {
  std::vector<double> out(y.size(), std::numeric_limits<double>::quiet_NaN());
  double s = 0, w_pow = 1;
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) continue;
    s = weight * s + (1 - weight) * y[i];
    w_pow *= weight;
    out[i] = w_pow < 1 ? s / (1 - w_pow) : y[i];
  }
  return out;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        // XML 1.0 forbids most control characters.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r')
          o += ' ';
        else
          o += c;
    }
  }
  return o;
}

std::string line_chart_svg(const PlotSpec& spec, const std::vector<PlotSeries>& series) {
  const bool has_y2 =
      std::any_of(series.begin(), series.end(), [](const PlotSeries& s) { return s.right_axis; });
  const double W = spec.width, H = spec.height;
  const double left = 78, right = has_y2 ? 78 : 24, bottom = 56;
  // Colours and the legend strip above the plot area (never over the data): items flow left to
  // right and wrap; the last one names the smoothing.
  std::vector<std::string> colors;
  size_t next_color = 0;
  for (const auto& s : series)
    colors.push_back(s.color.empty() ? kPalette[next_color++ % 6] : s.color);
  const bool smooth = spec.smoothing > 0 && spec.smoothing < 1;
  struct LegendItem {
    std::string text, color;  // color "" = the note
    double x = 0, y = 0;
  };
  std::vector<LegendItem> legend;
  for (size_t i = 0; i < series.size(); ++i)
    legend.push_back(
        {series[i].name + (has_y2 ? (series[i].right_axis ? " (right axis)" : " (left axis)") : ""),
         colors[i]});
  {
    char buf[96];
    if (smooth)
      std::snprintf(buf, sizeof buf, "faint: raw values; solid: EMA (smoothing %.2g)",
                    spec.smoothing);
    else
      std::snprintf(buf, sizeof buf, "raw values (no smoothing)");
    legend.push_back({buf, ""});
  }
  const double lh = 16, legend_w = W - left - right;
  double cx = 0, cy = 0;
  for (auto& it : legend) {
    const double w = (it.color.empty() ? 0 : 28) + 6.6 * static_cast<double>(it.text.size()) + 18;
    if (cx > 0 && cx + w > legend_w) {
      cx = 0;
      cy += lh;
    }
    it.x = left + cx;
    it.y = 40 + cy;
    cx += w;
  }
  const double top = 40 + cy + lh + 6;
  const double pw = W - left - right, ph = H - top - bottom;
  Range rx, ry, ry2;
  size_t n_points = 0;
  for (const auto& s : series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      rx.add(s.x[i]);
      (s.right_axis ? ry2 : ry).add(s.y[i]);
      ++n_points;
    }
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << spec.width << "\" height=\""
    << spec.height << "\" viewBox=\"0 0 " << spec.width << " " << spec.height
    << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << num(W / 2)
    << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">"
    << xml_escape(spec.title) << "</text>\n";
  if (n_points == 0) {
    o << "<rect x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\"" << num(pw)
      << "\" height=\"" << num(ph) << "\" fill=\"none\" stroke=\"#888\"/>\n"
      << "<text x=\"" << num(left + pw / 2) << "\" y=\"" << num(top + ph / 2)
      << "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n";
    return o.str();
  }
  const std::vector<double> tx = nice_ticks(rx.lo, rx.hi, 6);
  const std::vector<double> ty = ry.empty() ? nice_ticks(0, 1) : nice_ticks(ry.lo, ry.hi, 5);
  const std::vector<double> ty2 = ry2.empty() ? nice_ticks(0, 1) : nice_ticks(ry2.lo, ry2.hi, 5);
  auto map = [](double v, const std::vector<double>& t, double a, double b) {
    return a + (v - t.front()) / (t.back() - t.front()) * (b - a);
  };
  auto px = [&](double v) { return map(v, tx, left, left + pw); };
  auto py = [&](double v) { return map(v, ty, top + ph, top); };
  auto py2 = [&](double v) { return map(v, ty2, top + ph, top); };

  // Grid, ticks and tick labels.
  o << "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
  for (double t : tx)
    o << "<line x1=\"" << num(px(t)) << "\" y1=\"" << num(top) << "\" x2=\"" << num(px(t))
      << "\" y2=\"" << num(top + ph) << "\"/>\n";
  for (double t : ty)
    o << "<line x1=\"" << num(left) << "\" y1=\"" << num(py(t)) << "\" x2=\"" << num(left + pw)
      << "\" y2=\"" << num(py(t)) << "\"/>\n";
  o << "</g>\n<rect x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\"" << num(pw)
    << "\" height=\"" << num(ph) << "\" fill=\"none\" stroke=\"#444\"/>\n<g fill=\"#222\">\n";
  const double sx = tx.size() > 1 ? tx[1] - tx[0] : 1, sy = ty.size() > 1 ? ty[1] - ty[0] : 1;
  const double sy2 = ty2.size() > 1 ? ty2[1] - ty2[0] : 1;
  for (double t : tx)
    o << "<line x1=\"" << num(px(t)) << "\" y1=\"" << num(top + ph) << "\" x2=\"" << num(px(t))
      << "\" y2=\"" << num(top + ph + 5) << "\" stroke=\"#444\"/><text x=\"" << num(px(t))
      << "\" y=\"" << num(top + ph + 19) << "\" text-anchor=\"middle\">" << format_tick(t, sx)
      << "</text>\n";
  for (double t : ty)
    o << "<line x1=\"" << num(left - 5) << "\" y1=\"" << num(py(t)) << "\" x2=\"" << num(left)
      << "\" y2=\"" << num(py(t)) << "\" stroke=\"#444\"/><text x=\"" << num(left - 8) << "\" y=\""
      << num(py(t) + 4) << "\" text-anchor=\"end\">" << format_tick(t, sy) << "</text>\n";
  if (has_y2)
    for (double t : ty2)
      o << "<line x1=\"" << num(left + pw) << "\" y1=\"" << num(py2(t)) << "\" x2=\""
        << num(left + pw + 5) << "\" y2=\"" << num(py2(t)) << "\" stroke=\"#444\"/><text x=\""
        << num(left + pw + 8) << "\" y=\"" << num(py2(t) + 4) << "\" text-anchor=\"start\">"
        << format_tick(t, sy2) << "</text>\n";
  o << "</g>\n";
  // Axis labels.
  o << "<text x=\"" << num(left + pw / 2) << "\" y=\"" << num(H - 12)
    << "\" text-anchor=\"middle\">" << xml_escape(spec.x_label) << "</text>\n"
    << "<text transform=\"translate(18 " << num(top + ph / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << xml_escape(spec.y_label) << "</text>\n";
  if (has_y2)
    o << "<text transform=\"translate(" << num(W - 14) << " " << num(top + ph / 2)
      << ") rotate(90)\" text-anchor=\"middle\">" << xml_escape(spec.y2_label) << "</text>\n";

  // Series: raw (faint) then EMA (solid); a NaN starts a new polyline.
  auto draw = [&](const PlotSeries& s, const std::vector<double>& y, const std::string& color,
                  double opacity, double width) {
    auto ymap =
        s.right_axis ? std::function<double(double)>(py2) : std::function<double(double)>(py);
    std::vector<std::string> seg;
    auto emit = [&]() {
      if (seg.size() == 1) {
        o << "<circle cx=\"" << seg[0].substr(0, seg[0].find(',')) << "\" cy=\""
          << seg[0].substr(seg[0].find(',') + 1) << "\" r=\"2.5\" fill=\"" << color
          << "\" fill-opacity=\"" << opacity << "\"/>\n";
      } else if (seg.size() > 1) {
        o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-opacity=\"" << opacity
          << "\" stroke-width=\"" << width << "\" stroke-linejoin=\"round\" points=\"";
        for (size_t i = 0; i < seg.size(); ++i) o << (i ? " " : "") << seg[i];
        o << "\"/>\n";
      }
      seg.clear();
    };
    for (size_t i = 0; i < std::min(s.x.size(), y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(y[i])) {
        emit();
        continue;
      }
      seg.push_back(num(px(s.x[i])) + "," + num(ymap(y[i])));
    }
    emit();
  };
  for (size_t i = 0; i < series.size(); ++i)
    draw(series[i], series[i].y, colors[i], smooth ? 0.3 : 1.0, 1.2);
  if (smooth)
    for (size_t i = 0; i < series.size(); ++i)
      draw(series[i], ema_smooth(series[i].y, spec.smoothing), colors[i], 1.0, 2.2);

  // Legend strip.
  for (const auto& it : legend) {
    if (it.color.empty()) {
      o << "<text x=\"" << num(it.x) << "\" y=\"" << num(it.y + 4) << "\" fill=\"#555\">"
        << xml_escape(it.text) << "</text>\n";
      continue;
    }
    o << "<line x1=\"" << num(it.x) << "\" y1=\"" << num(it.y) << "\" x2=\"" << num(it.x + 22)
      << "\" y2=\"" << num(it.y) << "\" stroke=\"" << it.color
      << "\" stroke-width=\"2.2\"/><text x=\"" << num(it.x + 28) << "\" y=\"" << num(it.y + 4)
      << "\">" << xml_escape(it.text) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

void write_line_chart_svg(const std::string& path, const PlotSpec& spec,
                          const std::vector<PlotSeries>& series) {
  const std::string s = line_chart_svg(spec, series);
  detail::AtomicFile f(path);
  f.write(s.data(), s.size());
  f.commit();
}

}  // namespace medr1::io
