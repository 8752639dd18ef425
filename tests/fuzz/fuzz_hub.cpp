// libFuzzer target: what medr1-download parses of bytes it did not write: the Hub's file listing
// (hub::parse_repo_listing: GET /api/models/<repo>/revision/<rev>?blobs=true) and a .metadata file
// left in the download folder by an earlier run or by huggingface_hub (hub::parse_meta), then the
// paths it would derive from them. The first byte picks which.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <string>

#include "medr1/hub/snapshot_download.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] & 1) {
      const auto listing = medr1::hub::parse_repo_listing(text, "fuzz://listing");
      for (const auto& f : listing.files) {
        // Every accepted name stays inside the output folder: not absolute, no ".." component. (A name that
        // merely starts with "..", as "..itattributes", is a file of its own: the first version of this check
        // trapped on it, CI's fuzz stage of 2026-12-03; the input is in corpus/hub/.)
        if (f.path.empty() || f.path[0] == '/') __builtin_trap();
        size_t start = 0;
        while (start <= f.path.size()) {
          const size_t end = std::min(f.path.find('/', start), f.path.size());
          if (f.path.compare(start, end - start, "..") == 0) __builtin_trap();
          start = end + 1;
        }
        (void)medr1::hub::metadata_path("/out", f.path);
        (void)medr1::hub::incomplete_path("/out", f.path, f.etag);
        (void)medr1::hub::keep_path(f.path, {"*.json", "*.safetensors"}, {"original/*"});
      }
    } else {
      (void)medr1::hub::parse_meta(text);
    }
  } catch (const std::exception&) {
  }
  return 0;
}
