// Progress bar: line format, duration format, log-line mode output.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "medr1/data/progress.h"

using namespace medr1::data;

TEST(Progress, FormatLine) {
  EXPECT_EQ(format_progress("eval CT", 120, 480, 2.0, 24),
            "eval CT [######------------------] 120/480 25.0% 2.00 it/s ETA 3:00");
  EXPECT_EQ(format_progress("x", 5, 0, 0.0, 10), "x 5 -- it/s");
  EXPECT_EQ(format_progress("x", 0, 10, 0.0, 0), "x 0/10 0.0% -- it/s ETA --");
}

TEST(Progress, FormatDuration) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(112), "1:52");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "--");
}

TEST(Progress, LogModeWritesLinesToGivenStream) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressOptions o;
    o.stream = f;
    o.tty = 0;
    o.log_interval_s = 0.0;  // a line per advance
    o.initial = 2;
    ProgressBar bar("demo", 4, o);
    bar.advance();
    bar.advance();
    EXPECT_EQ(bar.done(), 4);
  }  // destructor writes the final line
  std::rewind(f);
  std::string text;
  char buf[256];
  while (std::fgets(buf, sizeof buf, f)) text += buf;
  std::fclose(f);
  EXPECT_NE(text.find("demo [##################------] 3/4 75.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("4/4 100.0%"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  int lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_EQ(lines, 3);
}

TEST(Progress, TtyModeRedrawsWithCarriageReturn) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressOptions o;
    o.stream = f;
    o.tty = 1;
    o.redraw_interval_s = 0.0;
    ProgressBar bar("t", 2, o);
    bar.advance();
    bar.advance();
    bar.finish();
    bar.finish();  // idempotent
  }
  std::rewind(f);
  std::string text;
  int c;
  while ((c = std::fgetc(f)) != EOF) text += static_cast<char>(c);
  std::fclose(f);
  int cr = 0, nl = 0;
  for (char ch : text) {
    cr += ch == '\r';
    nl += ch == '\n';
  }
  EXPECT_EQ(cr, 3) << text;  // two redraws and the final line
  EXPECT_EQ(nl, 1) << text;  // only the final line ends the line
  EXPECT_NE(text.find("2/2 100.0%"), std::string::npos);
}
