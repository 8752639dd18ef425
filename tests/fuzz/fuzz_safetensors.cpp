// libFuzzer target: safetensors files (io::SafetensorsFile::open, then every tensor's view / copy).
#include <ATen/ATen.h>

#include <cstdint>
#include <exception>

#include "fuzz_util.h"
#include "medr1/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = medr1::fuzz::write_scratch(data, size, "model.safetensors");
  try {
    auto f = medr1::io::SafetensorsFile::open(path);
    for (const auto& name : f->names()) {
      at::Tensor t = f->tensor(name);
      if (t.numel() > 0)
        (void)t.flatten()[t.numel() - 1].item<double>();  // touch the last element's bytes
    }
  } catch (const std::exception&) {
  }
  return 0;
}
