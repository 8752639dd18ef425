// keep_freed_memory (core/memory.h): a block far above glibc's 32 MB mmap ceiling comes from the
// heap, not from its own mapping, and freeing it leaves the memory with the process instead of
// unmapping it.
#include "medr1/core/memory.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace {

TEST(Memory, KeepFreedMemoryServesLargeBlocksFromTheHeap) {
  const char* release = std::getenv("MEDR1_MALLOC_RELEASE");
  if (release != nullptr && std::strcmp(release, "1") == 0)
    GTEST_SKIP() << "MEDR1_MALLOC_RELEASE=1";
  medr1::keep_freed_memory();
  const size_t mapped_before = mallinfo2().hblkhd;  // blocks mmap'd before (static initialisers)
  const size_t n = size_t{64} << 20;
  void* p = std::malloc(n);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, n);
  const struct mallinfo2 held = mallinfo2();
  EXPECT_LE(held.hblkhd, mapped_before) << "the 64 MB block was mmap'd";
  EXPECT_GE(held.arena, n);
  std::free(p);
  const struct mallinfo2 freed = mallinfo2();
  EXPECT_GE(freed.arena, n) << "the heap was trimmed";
  EXPECT_GE(freed.fordblks, n);
}

}  // namespace
