// See include/medr1/core/memory.h.
#include "medr1/core/memory.h"

#include <malloc.h>

#include <climits>
#include <cstdlib>
#include <cstring>

namespace medr1 {

void keep_freed_memory() {
  const char* release = std::getenv("MEDR1_MALLOC_RELEASE");
  if (release != nullptr && std::strcmp(release, "1") == 0) return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

}  // namespace medr1
