#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "frugal/data/dataset.h"

namespace frugal {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

constexpr uint8_t kTypeUnsignedByte = 0x08;

Result<GzFile> OpenGz(const std::string& path) {
  // gzopen reads plain files transparently, so uncompressed IDX works too.
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    if (err == ENOENT) return NotFoundError(path + ": no such file");
    return InvalidArgumentError(path + ": cannot open: " + std::strerror(err));
  }
  gzbuffer(f, 1 << 18);
  return GzFile(f);
}

// Reads up to len bytes; returns how many were read, or an Error for corrupt gzip data.
Result<size_t> ReadSome(gzFile f, const std::string& path, uint8_t* dst, size_t len) {
  size_t got = 0;
  while (got < len) {
    const unsigned ask = static_cast<unsigned>(std::min<size_t>(len - got, 1u << 30));
    const int r = gzread(f, dst + got, ask);
    if (r < 0) {
      int code = 0;
      const char* msg = gzerror(f, &code);
      return DataLossError(path + ": corrupt gzip stream: " + (msg ? msg : "unknown error"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

struct IdxHeader {
  std::vector<uint64_t> dims;
};

uint32_t BigEndian32(const uint8_t* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

Result<IdxHeader> ReadHeader(gzFile f, const std::string& path) {
  uint8_t magic[4];
  FRUGAL_ASSIGN_OR_RETURN(size_t got, ReadSome(f, path, magic, 4));
  if (got < 4) return DataLossError(path + ": truncated IDX header (" + std::to_string(got) + " of 4 magic bytes)");
  if (magic[0] != 0 || magic[1] != 0) {
    return InvalidArgumentError(path + ": bad IDX magic: first two bytes must be zero");
  }
  if (magic[2] != kTypeUnsignedByte) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02x", magic[2]);
    return InvalidArgumentError(path + ": bad IDX magic: element type " + type +
                                " is not supported (only 0x08, unsigned byte)");
  }
  const size_t ndims = magic[3];
  if (ndims == 0) return InvalidArgumentError(path + ": bad IDX magic: zero dimensions");
  IdxHeader h;
  for (size_t i = 0; i < ndims; ++i) {
    uint8_t b[4];
    FRUGAL_ASSIGN_OR_RETURN(size_t n, ReadSome(f, path, b, 4));
    if (n < 4) return DataLossError(path + ": truncated IDX header (dimension " + std::to_string(i) + ")");
    h.dims.push_back(BigEndian32(b));
  }
  return h;
}

// Reads exactly count bytes in bounded chunks, handing each to sink, so a
// header that lies about its size costs at most one chunk of memory before
// the truncation is found.
template <typename Sink>
Status ReadBody(gzFile f, const std::string& path, uint64_t count, std::string_view what, Sink sink) {
  constexpr size_t kChunk = 1 << 20;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(count, kChunk)));
  uint64_t done = 0;
  while (done < count) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(count - done, kChunk));
    FRUGAL_ASSIGN_OR_RETURN(size_t got, ReadSome(f, path, buf.data(), want));
    sink(buf.data(), got);
    done += got;
    if (got < want) {
      return DataLossError(path + ": truncated " + std::string(what) + ": expected " + std::to_string(count) +
                           " bytes, got " + std::to_string(done));
    }
  }
  return OkStatus();
}

}  // namespace

Result<Dataset> LoadIdx(const std::string& images_gz_path, const std::string& labels_gz_path) {
  FRUGAL_ASSIGN_OR_RETURN(GzFile images, OpenGz(images_gz_path));
  FRUGAL_ASSIGN_OR_RETURN(IdxHeader ih, ReadHeader(images.get(), images_gz_path));
  if (ih.dims.size() < 2) {
    return InvalidArgumentError(images_gz_path + ": IDX image file needs at least 2 dimensions, has " +
                                std::to_string(ih.dims.size()));
  }
  const uint64_t items = ih.dims[0];
  if (items > kIdxMaxItems) {
    return InvalidArgumentError(images_gz_path + ": IDX item count " + std::to_string(items) + " exceeds the limit " +
                                std::to_string(kIdxMaxItems));
  }
  uint64_t features = 1;
  for (size_t i = 1; i < ih.dims.size(); ++i) {
    if (ih.dims[i] == 0) {
      return InvalidArgumentError(images_gz_path + ": IDX dimension " + std::to_string(i) + " is zero");
    }
    if (__builtin_mul_overflow(features, ih.dims[i], &features)) {
      return InvalidArgumentError(images_gz_path + ": IDX dimensions overflow when multiplied");
    }
    if (features > kIdxMaxFeatures) {
      return InvalidArgumentError(images_gz_path + ": IDX per-item size " + std::to_string(features) +
                                  " exceeds the limit " + std::to_string(kIdxMaxFeatures));
    }
  }
  uint64_t values = 0;
  if (__builtin_mul_overflow(items, features, &values) || values > kIdxMaxValues) {
    return InvalidArgumentError(images_gz_path + ": IDX total size " + std::to_string(items) + " x " +
                                std::to_string(features) + " exceeds the limit " + std::to_string(kIdxMaxValues));
  }

  FRUGAL_ASSIGN_OR_RETURN(GzFile labels, OpenGz(labels_gz_path));
  FRUGAL_ASSIGN_OR_RETURN(IdxHeader lh, ReadHeader(labels.get(), labels_gz_path));
  if (lh.dims.size() != 1) {
    return InvalidArgumentError(labels_gz_path + ": IDX label file must have 1 dimension, has " +
                                std::to_string(lh.dims.size()));
  }
  if (lh.dims[0] != items) {
    return InvalidArgumentError(labels_gz_path + ": label count " + std::to_string(lh.dims[0]) +
                                " does not match image count " + std::to_string(items));
  }

  Dataset ds;
  ds.num_features = static_cast<size_t>(features);
  // Reserve what a real file of this header needs, capped so a lying header cannot force a huge allocation.
  ds.codes.reserve(static_cast<size_t>(std::min<uint64_t>(values, uint64_t{1} << 24)));
  ds.code_divisor = 255.0f;
  FRUGAL_RETURN_IF_ERROR(ReadBody(images.get(), images_gz_path, values, "pixel data", [&](const uint8_t* b, size_t n) {
    ds.codes.insert(ds.codes.end(), b, b + n);
  }));
  ds.labels.reserve(static_cast<size_t>(std::min<uint64_t>(items, uint64_t{1} << 24)));
  int32_t max_label = -1;
  FRUGAL_RETURN_IF_ERROR(ReadBody(labels.get(), labels_gz_path, items, "label data", [&](const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      ds.labels.push_back(b[i]);
      max_label = std::max<int32_t>(max_label, b[i]);
    }
  }));
  ds.num_classes = static_cast<size_t>(max_label + 1);
  return ds;
}

Result<Dataset> LoadFashionMnist(Split split, const std::string& dir) {
  const std::string prefix = dir + (split == Split::kTrain ? "/train" : "/t10k");
  auto ds = LoadIdx(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz");
  if (!ds.ok()) return ds.error().WithContext("Fashion-MNIST");
  if (ds->num_features != 784 || ds->num_classes > 10) {
    return InvalidArgumentError("Fashion-MNIST in " + dir + ": expected 28x28 images and labels 0..9, got " +
                                std::to_string(ds->num_features) + " features and " +
                                std::to_string(ds->num_classes) + " classes");
  }
  ds->num_classes = 10;
  return ds;
}

}  // namespace frugal
