// A progress bar on stderr for long loops (inference, evaluation, data preparation).
// On a terminal it redraws one line with '\r' (at most ~10 times a second); otherwise (logs, CI)
// it prints a plain line every `log_interval_s` seconds and at the end. Never writes to stdout.
// Thread-safe: workers may call advance() concurrently. Rate and ETA count only the work done in
// this run (items already done on resume are given as `initial` and excluded from the rate).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace medr1::data {

struct ProgressOptions {
  std::FILE* stream = nullptr;   // nullptr = stderr
  int tty = -1;                  // -1 = isatty(stream), 0 = log lines, 1 = '\r' redraws
  double log_interval_s = 10.0;  // non-tty: seconds between lines
  double redraw_interval_s = 0.1;
  int bar_width = 24;
  int64_t initial = 0;           // items already done before this run (resume)
};

// One status line, e.g. "eval CT [######------------------] 120/480 25.0% 3.21 it/s ETA 1:52"
// (total <= 0: no bar and no ETA; rate <= 0: "-- it/s", ETA "--"). Exposed for tests.
std::string format_progress(const std::string& label, int64_t done, int64_t total, double rate,
                            int bar_width);
// "1:52", "1:02:03" (h:mm:ss past an hour), "--" for a negative or non-finite value.
std::string format_duration(double seconds);

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, ProgressOptions opts = {});
  ~ProgressBar();  // finish() if not done yet
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void advance(int64_t n = 1);
  // Final line (with a newline on a tty); idempotent.
  void finish();
  int64_t done() const;
  double rate() const;  // items per second in this run

 private:
  void draw_locked(bool final_line);
  using Clock = std::chrono::steady_clock;

  std::string label_;
  int64_t total_;
  ProgressOptions opts_;
  std::FILE* out_;
  bool tty_;
  mutable std::mutex mu_;
  int64_t done_;
  Clock::time_point start_;
  Clock::time_point last_draw_;
  bool finished_ = false;
};

}  // namespace medr1::data
