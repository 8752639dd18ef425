// Line charts as standalone SVG files, written by hand (no plotting library, no Python): one or two
// y axes with "nice" 1-2-5 ticks and labels, a title, each series drawn raw (faint) and
// EMA-smoothed (solid) the way TensorBoard's smoothing slider does (debiased exponential moving
// average), and a legend that names the smoothing factor. NaN / inf points break a line; an empty
// chart says "no data". No torch here.
#pragma once

#include <string>
#include <vector>

namespace medr1::io {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite y values are gaps
  std::string color;         // CSS colour; "" = the palette's next one
  bool right_axis = false;   // plotted against the second (right) y axis
};

struct PlotSpec {
  std::string title, x_label, y_label,
      y2_label;            // y2_label: the right axis (used when a series is on it)
  double smoothing = 0.6;  // EMA weight in [0, 1); 0 = raw only
  int width = 720, height = 400;
};

// Tick positions covering [lo, hi] with a step of 1, 2 or 5 x 10^k giving about `target` ticks (the
// first tick <= lo, the last >= hi). lo == hi gives a small range around the value; non-finite
// input gives {0, 1}.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// Tick label: as few digits as the tick step needs ("0.25", "1e-06", "1200").
std::string format_tick(double v, double step);
// TensorBoard's smoothing: s = w * s + (1 - w) * y, debiased by 1 - w^n; non-finite y stay gaps and
// are skipped by the average.
std::vector<double> ema_smooth(const std::vector<double>& y, double weight);
// &, <, >, " and ' as XML entities.
std::string xml_escape(const std::string& s);

// The chart as an SVG document (UTF-8, valid XML).
std::string line_chart_svg(const PlotSpec& spec, const std::vector<PlotSeries>& series);
// Writes it to `path` atomically (temp file + rename).
void write_line_chart_svg(const std::string& path, const PlotSpec& spec,
                          const std::vector<PlotSeries>& series);

}  // namespace medr1::io
