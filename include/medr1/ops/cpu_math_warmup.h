// One-thread first calls of the vector-math functions ATen takes from MKL (VML).
//
// ATen computes cos, sin, exp, log, tanh, erf, sqrt, ... of contiguous float / double CPU tensors with MKL's
// VML inside at::parallel_for. MKL picks each VML function's kernel at that function's first call; when the
// first call runs on several threads at once, a thread can compute with a much less accurate kernel. Measured
// (torch 2.12.1 wheel, 2 threads under CPU contention): the vision tower's rotary `emb.cos()` was off by up to
// 1.5e-4 on the worker thread's half of the rows in ~3% of fresh processes (the batched-vision golden test
// failed on a CI host this way); after a one-thread first call, 0 of 400 processes. warm_up_cpu_math() makes
// those first calls on the calling thread (tensors below ATen's parallel grain), once per process; the model
// constructors call it, so everything that builds a model is covered.
#pragma once

namespace medr1::ops {

void warm_up_cpu_math();

}  // namespace medr1::ops
