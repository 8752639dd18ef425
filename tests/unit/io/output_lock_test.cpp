// OutputLock: one writer per output file / folder; the refusal names the holder; the lock goes with
// its holder (destruction, or the holder process dying).
#include "medr1/io/output_lock.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "io_test_util.h"

namespace medr1::io {
namespace {

using test::TempDir;

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "";
}

TEST(OutputLock, SecondWriterOfAFileIsRefusedNamingTheHolder) {
  TempDir d;
  const std::string out = d.file("preds.jsonl");
  OutputLock first = lock_output_file(out);
  EXPECT_EQ(first.path(), out + ".lock");
  const std::string msg = refusal([&] { OutputLock second = lock_output_file(out); });
  ASSERT_FALSE(msg.empty()) << "the second lock was granted";
  EXPECT_NE(msg.find("output " + out + " is in use by another run"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pid " + std::to_string(::getpid())), std::string::npos) << msg;
  EXPECT_NE(msg.find("test_io"), std::string::npos) << msg;  // the holder's command line
  EXPECT_NE(msg.find("lock file: " + out + ".lock"), std::string::npos) << msg;
}

TEST(OutputLock, ReleasedWhenTheHolderGoes) {
  TempDir d;
  const std::string dir = d.file("run");
  { OutputLock a = lock_output_dir(dir); }
  OutputLock b = lock_output_dir(dir);  // granted again
  EXPECT_EQ(b.path(), dir + "/.medr1.lock");
  OutputLock moved = std::move(b);
  EXPECT_FALSE(refusal([&] { OutputLock c = lock_output_dir(dir); }).empty());
}

TEST(OutputLock, DistinctOutputsDoNotConflict) {
  TempDir d;
  OutputLock a = lock_output_file(d.file("a.jsonl"));
  OutputLock b = lock_output_file(d.file("b.jsonl"));
  OutputLock c = lock_output_dir(d.file("run1"));
  OutputLock e = lock_output_dir(d.file("run2"));
  SUCCEED();
}

// Another process holds the lock; when it is killed (kill -9: no destructor runs) the kernel
// releases it.
TEST(OutputLock, HeldByAnotherProcessThenFreedByItsDeath) {
  TempDir d;
  const std::string dir = d.file("run");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    OutputLock l = lock_output_dir(dir);
    const char c = 'x';
    if (write(ready[1], &c, 1) != 1) _exit(3);
    pause();
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  const std::string msg = refusal([&] { OutputLock l = lock_output_dir(dir); });
  EXPECT_NE(
      msg.find("output folder " + dir + " is in use by another run (pid " + std::to_string(child)),
      std::string::npos)
      << msg;
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  OutputLock after = lock_output_dir(dir);  // granted: the lock died with its holder
  close(ready[0]);
  close(ready[1]);
}

TEST(OutputLock, UnopenableLockFileIsAClearError) {
  const std::string msg = refusal([] { OutputLock l("/proc/medr1-no-such/x.lock", "output x"); });
  EXPECT_NE(msg.find("/proc/medr1-no-such/x.lock: cannot open the lock file of output x"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace medr1::io
