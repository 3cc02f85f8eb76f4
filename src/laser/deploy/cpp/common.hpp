// Command line, shape checks and the --bench loop shared by every runner (see main.cpp).
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "model_spec.hpp"
#include "npy.hpp"

struct Options {
  std::string model = LASER_DEFAULT_MODEL;
  std::vector<std::string> inputs, outputs;
  int bench = 0, warmup = 10, threads = 0;
};

inline Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") o.model = value();
    else if (a == "--input") o.inputs.push_back(value());
    else if (a == "--output") o.outputs.push_back(value());
    else if (a == "--bench") o.bench = std::stoi(value());
    else if (a == "--warmup") o.warmup = std::stoi(value());
    else if (a == "--threads") o.threads = std::stoi(value());
    else if (a == "-h" || a == "--help") {
      std::printf("usage: laser-run --input X.npy [--input ...] [--output Y.npy ...] [--bench N] "
                  "[--warmup N] [--threads T] [--model PATH]\n");
      std::exit(0);
    } else throw std::runtime_error("unknown argument " + a + " (see --help)");
  }
  if (o.inputs.size() != kInputNames.size())
    throw std::runtime_error("the model takes " + std::to_string(kInputNames.size()) +
                             " input(s); give one --input FILE.npy per input, in order: " + kInputList);
  if (o.bench == 0 && o.outputs.empty()) throw std::runtime_error("give --output FILE.npy (or --bench N)");
  if (o.outputs.size() > kOutputNames.size())
    throw std::runtime_error("the model has " + std::to_string(kOutputNames.size()) + " output(s): " + kOutputList);
  return o;
}

inline std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + (s[i] < 0 ? std::string("N") : std::to_string(s[i]));
  return t + ")";
}

// Reads every input and checks it against the exported shapes (-1: any size; the batch dim is shared).
inline std::vector<Array> read_inputs(const Options& o) {
  std::vector<Array> arrays;
  int64_t batch = -1;
  for (size_t i = 0; i < o.inputs.size(); ++i) {
    Array a = read_npy(o.inputs[i]);
    const auto& want = kInputShapes[i];
    bool ok = a.shape.size() == want.size();
    for (size_t d = 0; ok && d < want.size(); ++d) ok = want[d] < 0 || want[d] == a.shape[d];
    if (ok && !want.empty() && want[0] < 0) {
      ok = batch < 0 || batch == a.shape[0];
      batch = a.shape[0];
    }
    if (!ok)
      throw std::runtime_error(o.inputs[i] + " has shape " + shape_text(a.shape) + ", input '" + kInputNames[i] +
                               "' needs " + shape_text(want));
    arrays.push_back(std::move(a));
  }
  return arrays;
}

// --bench: warm-up calls, then N timed calls of `call`; prints p50/p90 in milliseconds.
inline void bench(const Options& o, const std::function<void()>& call) {
  for (int i = 0; i < o.warmup; ++i) call();
  std::vector<double> ms;
  for (int i = 0; i < o.bench; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    call();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * (ms.size() - 1) + 0.5))]; };
  std::printf("runs=%d warmup=%d p50_ms=%.4f p90_ms=%.4f\n", o.bench, o.warmup, pct(0.5), pct(0.9));
}
