// Process-wide memory settings for medr1's apps and benchmarks.
#pragma once

namespace medr1 {

// glibc hands every freed block above its mmap threshold (32 MB at most) back to the kernel, so
// each training step or forward page-faults its large activations in again ([N, T, V] logits and
// their gradients, the vision tower's [H, P, P] attention scores): ~25% of a demo GRPO step went to
// clear_page / page faults (perf), and a third of a bf16 4-layer forward. keep_freed_memory() keeps
// freed memory in the heap (no mmap'd blocks, no trimming), as PyTorch's caching allocators do on
// GPUs: the demo step 6.5 -> 4.5 s, the bf16 forward 0.76 -> 0.60 s, identical results; the price
// is a higher resident set (freed memory stays with the process). MEDR1_MALLOC_RELEASE=1 keeps
// glibc's defaults. Call once, first thing in main().
void keep_freed_memory();

}  // namespace medr1
