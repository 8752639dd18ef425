// Progress bar on stderr with rate and ETA (progress.h).
#include "medr1/data/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace medr1::data {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[48];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

std::string format_progress(const std::string& label, int64_t done, int64_t total, double rate,
                            int bar_width) {
  std::string s = label;
  char buf[96];
  if (total > 0) {
    const double frac = std::min(1.0, std::max(0.0, static_cast<double>(done) / total));
    if (bar_width > 0) {
      const int fill = static_cast<int>(frac * bar_width);
      s += " [" + std::string(fill, '#') + std::string(bar_width - fill, '-') + "]";
    }
    std::snprintf(buf, sizeof buf, " %lld/%lld %.1f%%", static_cast<long long>(done),
                  static_cast<long long>(total), frac * 100.0);
  } else {
    std::snprintf(buf, sizeof buf, " %lld", static_cast<long long>(done));
  }
  s += buf;
  if (rate > 0 && std::isfinite(rate)) {
    std::snprintf(buf, sizeof buf, " %.2f it/s", rate);
    s += buf;
  } else {
    s += " -- it/s";
  }
  if (total > 0) {
    const double eta = rate > 0 ? static_cast<double>(std::max<int64_t>(0, total - done)) / rate
                                : -1.0;
    s += " ETA " + format_duration(eta);
  }
  return s;
}

ProgressBar::ProgressBar(std::string label, int64_t total, ProgressOptions opts)
    : label_(std::move(label)),
      total_(total),
      opts_(opts),
      out_(opts.stream ? opts.stream : stderr),
      tty_(opts.tty >= 0 ? opts.tty == 1 : ::isatty(::fileno(out_)) == 1),
      done_(opts.initial),
      start_(Clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

double ProgressBar::rate() const {
  std::lock_guard<std::mutex> lk(mu_);
  const double el = std::chrono::duration<double>(Clock::now() - start_).count();
  return el > 0 ? static_cast<double>(done_ - opts_.initial) / el : 0.0;
}

int64_t ProgressBar::done() const {
  std::lock_guard<std::mutex> lk(mu_);
  return done_;
}

void ProgressBar::advance(int64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  done_ += n;
  if (finished_) return;
  const double since =
      std::chrono::duration<double>(Clock::now() - last_draw_).count();
  const double interval = tty_ ? opts_.redraw_interval_s : opts_.log_interval_s;
  if (since >= interval) draw_locked(false);
}

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lk(mu_);
  if (finished_) return;
  finished_ = true;
  draw_locked(true);
}

void ProgressBar::draw_locked(bool final_line) {
  const auto now = Clock::now();
  last_draw_ = now;
  const double el = std::chrono::duration<double>(now - start_).count();
  const double r = el > 0 ? static_cast<double>(done_ - opts_.initial) / el : 0.0;
  std::string line = format_progress(label_, done_, total_, r, opts_.bar_width);
  if (final_line) line += " in " + format_duration(el);
  if (tty_) {
    // "\x1b[K" clears leftovers of a longer previous line.
    std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

}  // namespace medr1::data
