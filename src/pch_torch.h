// Precompiled header for the library parts: the narrow torch headers most files use.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
