// Minimal .npy reader/writer for little-endian float32, C-order arrays (format versions 1.0-3.0).
#pragma once
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

struct Array {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

inline Array read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  if (!f.read(magic, 8) || std::string(magic, 6) != "\x93NUMPY")
    throw std::runtime_error(path + " is not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 2);
    header_len = n;
  } else {
    f.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, ' ');
  f.read(&header[0], header_len);
  if (header.find("'descr': '<f4'") == std::string::npos)
    throw std::runtime_error(path + ": only float32 ('<f4') arrays are supported; save it with x.astype('float32')");
  if (header.find("'fortran_order': True") != std::string::npos)
    throw std::runtime_error(path + ": Fortran-order array; save it with np.ascontiguousarray(x)");
  auto open = header.find('('), close = header.find(')');
  if (open == std::string::npos || close == std::string::npos) throw std::runtime_error(path + ": bad .npy header");
  Array a;
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string item;
  int64_t count = 1;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    a.shape.push_back(std::stoll(item));
    count *= a.shape.back();
  }
  a.data.resize(static_cast<size_t>(count));
  if (!f.read(reinterpret_cast<char*>(a.data.data()), count * 4))
    throw std::runtime_error(path + ": file is shorter than its shape says");
  return a;
}

inline void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t count = 1;
  for (auto d : shape) { dims += std::to_string(d) + ","; count *= d; }
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  uint16_t n = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(&n), 2);
  f << header;
  f.write(reinterpret_cast<const char*>(data), count * 4);
  if (!f) throw std::runtime_error("cannot write " + path);
}
