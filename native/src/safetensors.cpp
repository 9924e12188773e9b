#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "checked.h"
#include "json.h"

namespace l4 {

namespace {
// A header larger than this is not a real checkpoint (the largest real ones are a few MB).
const uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw std::runtime_error(path + ": " + msg);
}
}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n = checked_product({n, d}, file + ": tensor " + name + " " + shape_str() + ": element count");
  return n;
}

std::string TensorInfo::shape_str() const {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); i++) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

void Checkpoint::release(const std::string& name) const {
  const TensorInfo& t = get(name);
  release(t.data, t.nbytes);
}

void Checkpoint::release(const void* data, size_t bytes) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t first = (uintptr_t(data) + page - 1) / page * page, end = (uintptr_t(data) + bytes) / page * page;
  if (end > first) madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
}

namespace {
// Opens `path` for reading only if it is a regular file: O_NONBLOCK so that a FIFO cannot block the open, and the
// type checked on the open descriptor (a symlink to /dev/zero or a directory is refused, not read forever).
int open_regular_file(const std::string& path, struct stat* st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  return fd;
}
}  // namespace

std::string read_text_file(const std::string& path, size_t max_bytes) {
  struct stat st;
  int fd = open_regular_file(path, &st);
  if (uint64_t(st.st_size) > max_bytes) {
    ::close(fd);
    fail(path, std::to_string(st.st_size) + " bytes is more than the " + std::to_string(max_bytes) +
                   " bytes such a file may have");
  }
  std::string text(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, &text[got], text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += size_t(n);
  }
  ::close(fd);
  text.resize(got);
  return text;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  struct stat st;
  int fd = open_regular_file(path, &st);
  size_ = size_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail(path, "truncated file: " + std::to_string(size_) + " bytes, too short for the 8-byte header length");
  }
  map_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail(path, std::string("mmap failed (") + std::strerror(errno) + ")");
  }
  try {
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | base[i];  // little-endian u64
    if (header_len > size_ - 8)
      fail(path, "header length " + std::to_string(header_len) + " goes beyond the end of the file (" +
                     std::to_string(size_) + " bytes); the file is truncated or not safetensors");
    if (header_len > kMaxHeaderBytes) fail(path, "header length " + std::to_string(header_len) + " is implausibly large");
    std::string header(reinterpret_cast<const char*>(base + 8), header_len);
    Json json = Json::parse(header, path + " header");
    if (!json.is_object()) fail(path, "header is not a JSON object");
    const uint8_t* data = base + 8 + header_len;
    size_t data_size = size_ - 8 - header_len;

    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, entry] : json.object()) {
      if (name == "__metadata__") continue;
      const std::string where = "tensor " + name;
      if (!entry.is_object() || !entry["dtype"].is_string() || !entry["shape"].is_array() ||
          !entry["data_offsets"].is_array())
        fail(path, where + ": entry needs dtype, shape and data_offsets");
      TensorInfo t;
      t.name = name;
      t.file = path;
      if (!dtype_from_name(entry["dtype"].string(), &t.dtype))
        fail(path, where + ": unknown dtype \"" + entry["dtype"].string() + "\"");
      for (const auto& d : entry["shape"].array()) {
        if (!d.is_number() || !(d.number() >= 0 && d.number() <= 1e12) || d.number() != std::floor(d.number()))
          fail(path, where + ": bad shape dimension");
        t.shape.push_back(int64_t(d.number()));
      }
      const auto& offs = entry["data_offsets"].array();
      if (offs.size() != 2 || !offs[0].is_number() || !offs[1].is_number() || !(offs[0].number() >= 0) ||
          !(offs[1].number() >= offs[0].number()) || offs[1].number() > 9e15 ||
          offs[0].number() != std::floor(offs[0].number()) || offs[1].number() != std::floor(offs[1].number()))
        fail(path, where + ": data_offsets must be [begin, end], whole numbers with begin <= end");
      uint64_t begin = uint64_t(offs[0].number()), end = uint64_t(offs[1].number());
      if (end > data_size)
        fail(path, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       "] out of range: the data section has " + std::to_string(data_size) + " bytes");
      const int64_t expected = checked_product({t.numel(), int64_t(dtype_size(t.dtype))}, path + ": " + where + " bytes");
      if (end - begin != uint64_t(expected))
        fail(path, where + ": byte length " + std::to_string(end - begin) + " does not match shape " + t.shape_str() +
                       " x " + dtype_name(t.dtype) + " (" + std::to_string(expected) + " bytes)");
      t.data = data + begin;
      t.nbytes = end - begin;
      ranges.push_back({begin, end});
      tensors_.emplace(name, std::move(t));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); i++) {
      if (ranges[i].first < ranges[i - 1].second) {
        std::string a, b;
        for (const auto& [n, t] : tensors_) {
          size_t off = size_t(t.data - data);
          if (off == ranges[i - 1].first && t.nbytes == ranges[i - 1].second - ranges[i - 1].first) a = n;
          if (off == ranges[i].first && t.nbytes == ranges[i].second - ranges[i].first) b = n;
        }
        fail(path, "overlapping data_offsets: tensors " + a + " and " + b + " share bytes");
      }
    }
    // As the safetensors library validates: the tensors cover the data section exactly, with no gap and nothing
    // after the last one. A header length a byte off (the header's padding) would otherwise shift every tensor.
    uint64_t covered = 0;
    for (const auto& [begin, end] : ranges) {
      if (begin != covered)
        fail(path, "data section has unused bytes [" + std::to_string(covered) + ", " + std::to_string(begin) +
                       ") between tensors: the header length or data_offsets are wrong");
      covered = end;
    }
    if (covered != data_size)
      fail(path, "data section is " + std::to_string(data_size) + " bytes but its tensors cover " + std::to_string(covered) +
                     ": the header length (" + std::to_string(header_len) + ") or data_offsets are wrong, or the file has trailing bytes");
  } catch (...) {
    munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

namespace {
// Whether `p` is there; something there that is not a regular file (a FIFO, a device) is an error, not absence.
bool file_exists(const std::string& p) {
  struct stat st;
  if (stat(p.c_str(), &st) != 0) return false;
  if (!S_ISREG(st.st_mode)) fail(p, "not a regular file");
  return true;
}
}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  // model.safetensors wins over an index when both exist, as in transformers.
  if (file_exists(single)) {
    shard_names.push_back("model.safetensors");
  } else if (file_exists(index)) {
    Json j = Json::parse(read_text_file(index), index);
    if (!j["weight_map"].is_object()) throw std::runtime_error(index + ": no \"weight_map\" object");
    std::set<std::string> seen;
    for (const auto& [name, file] : j["weight_map"].object()) {
      if (!file.is_string() || file.string().find('/') != std::string::npos)
        throw std::runtime_error(index + ": weight_map entry for " + name + " must be a file name in the same directory");
      weight_map[name] = file.string();
      if (seen.insert(file.string()).second) shard_names.push_back(file.string());
    }
  } else {
    throw std::runtime_error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& shard : shard_names) {
    auto file = std::make_unique<SafetensorsFile>(dir + "/" + shard);
    for (const auto& [name, info] : file->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(name);
        if (it == weight_map.end() || it->second != shard) continue;  // the index is authoritative
      }
      if (tensors_.count(name)) throw std::runtime_error(dir + ": tensor " + name + " appears in two shards");
      tensors_.emplace(name, info);
    }
    files_.push_back(std::move(file));
  }
  for (const auto& [name, shard] : weight_map)
    if (!tensors_.count(name))
      throw std::runtime_error(dir + "/" + shard + ": missing tensor " + name + " listed in model.safetensors.index.json");
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw std::runtime_error(dir_ + ": missing tensor " + name + " (the model config.json describes needs it)");
  return it->second;
}

}  // namespace l4
