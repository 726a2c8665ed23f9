#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "frugal/data/dataset.h"
#include "frugal/data/table.h"

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

namespace {

// The validated shape of an IDX image file, its stream positioned at the pixels.
struct ImageFile {
  GzFile file;
  uint64_t items = 0, features = 0, values = 0;
};

Result<ImageFile> OpenImages(const std::string& path) {
  ImageFile im;
  FRUGAL_ASSIGN_OR_RETURN(im.file, OpenGz(path));
  FRUGAL_ASSIGN_OR_RETURN(IdxHeader ih, ReadHeader(im.file.get(), path));
  if (ih.dims.size() < 2) {
    return InvalidArgumentError(path + ": IDX image file needs at least 2 dimensions, has " +
                                std::to_string(ih.dims.size()));
  }
  im.items = ih.dims[0];
  if (im.items > kIdxMaxItems) {
    return InvalidArgumentError(path + ": IDX item count " + std::to_string(im.items) + " exceeds the limit " +
                                std::to_string(kIdxMaxItems));
  }
  im.features = 1;
  for (size_t i = 1; i < ih.dims.size(); ++i) {
    if (ih.dims[i] == 0) return InvalidArgumentError(path + ": IDX dimension " + std::to_string(i) + " is zero");
    if (__builtin_mul_overflow(im.features, ih.dims[i], &im.features)) {
      return InvalidArgumentError(path + ": IDX dimensions overflow when multiplied");
    }
    if (im.features > kIdxMaxFeatures) {
      return InvalidArgumentError(path + ": IDX per-item size " + std::to_string(im.features) +
                                  " exceeds the limit " + std::to_string(kIdxMaxFeatures));
    }
  }
  if (__builtin_mul_overflow(im.items, im.features, &im.values) || im.values > kIdxMaxValues) {
    return InvalidArgumentError(path + ": IDX total size " + std::to_string(im.items) + " x " +
                                std::to_string(im.features) + " exceeds the limit " + std::to_string(kIdxMaxValues));
  }
  return im;
}

// Every label of an IDX label file; `expected_items` (if not UINT64_MAX) must match its count.
Result<std::vector<int32_t>> ReadLabels(const std::string& path, uint64_t expected_items, std::string_view against) {
  FRUGAL_ASSIGN_OR_RETURN(GzFile labels, OpenGz(path));
  FRUGAL_ASSIGN_OR_RETURN(IdxHeader lh, ReadHeader(labels.get(), path));
  if (lh.dims.size() != 1) {
    return InvalidArgumentError(path + ": IDX label file must have 1 dimension, has " + std::to_string(lh.dims.size()));
  }
  if (expected_items != UINT64_MAX && lh.dims[0] != expected_items) {
    return InvalidArgumentError(path + ": label count " + std::to_string(lh.dims[0]) + " does not match " +
                                std::string(against) + " " + std::to_string(expected_items));
  }
  if (lh.dims[0] > kIdxMaxItems) {
    return InvalidArgumentError(path + ": IDX item count " + std::to_string(lh.dims[0]) + " exceeds the limit " +
                                std::to_string(kIdxMaxItems));
  }
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(lh.dims[0], uint64_t{1} << 24)));
  FRUGAL_RETURN_IF_ERROR(ReadBody(labels.get(), path, lh.dims[0], "label data", [&](const uint8_t* b, size_t n) {
    out.insert(out.end(), b, b + n);
  }));
  return out;
}

int32_t MaxLabel(const std::vector<int32_t>& labels) {
  int32_t m = -1;
  for (int32_t l : labels) m = std::max(m, l);
  return m;
}

}  // namespace

Result<Dataset> LoadIdx(const std::string& images_gz_path, const std::string& labels_gz_path) {
  FRUGAL_ASSIGN_OR_RETURN(ImageFile im, OpenImages(images_gz_path));
  Dataset ds;
  FRUGAL_ASSIGN_OR_RETURN(ds.labels, ReadLabels(labels_gz_path, im.items, "image count"));
  ds.num_features = static_cast<size_t>(im.features);
  // Reserve what a real file of this header needs, capped so a lying header cannot force a huge allocation.
  ds.codes.reserve(static_cast<size_t>(std::min<uint64_t>(im.values, uint64_t{1} << 24)));
  ds.code_divisor = 255.0f;
  FRUGAL_RETURN_IF_ERROR(ReadBody(im.file.get(), images_gz_path, im.values, "pixel data",
                                  [&](const uint8_t* b, size_t n) { ds.codes.insert(ds.codes.end(), b, b + n); }));
  ds.num_classes = static_cast<size_t>(MaxLabel(ds.labels) + 1);
  return ds;
}

Result<std::vector<int32_t>> LoadIdxLabels(const std::string& labels_gz_path) {
  return ReadLabels(labels_gz_path, UINT64_MAX, "");
}

Result<Dataset> LoadIdxRows(const std::string& images_gz_path, const std::string& labels_gz_path,
                            std::span<const uint32_t> rows) {
  FRUGAL_ASSIGN_OR_RETURN(ImageFile im, OpenImages(images_gz_path));
  FRUGAL_ASSIGN_OR_RETURN(std::vector<int32_t> all_labels, ReadLabels(labels_gz_path, im.items, "image count"));
  for (size_t k = 0; k < rows.size(); ++k) {
    if (rows[k] >= im.items || (k > 0 && rows[k] <= rows[k - 1])) {
      return InvalidArgumentError(images_gz_path + ": row " + std::to_string(rows[k]) + " (position " +
                                  std::to_string(k) + ") is out of range or out of order; rows must ascend below " +
                                  std::to_string(im.items));
    }
  }
  Dataset ds;
  ds.num_features = static_cast<size_t>(im.features);
  ds.num_classes = static_cast<size_t>(MaxLabel(all_labels) + 1);
  ds.code_divisor = 255.0f;
  ds.labels.reserve(rows.size());
  for (uint32_t r : rows) ds.labels.push_back(all_labels[r]);
  ds.codes.resize(rows.size() * ds.num_features);
  // Stream the pixels once, copying the bytes of kept rows as they pass.
  const uint64_t f = im.features;
  uint64_t offset = 0;  // of the chunk's first byte in the pixel data
  size_t next = 0;      // first kept row not yet complete
  FRUGAL_RETURN_IF_ERROR(ReadBody(im.file.get(), images_gz_path, im.values, "pixel data", [&](const uint8_t* b, size_t n) {
    const uint64_t end = offset + n;
    for (size_t k = next; k < rows.size() && uint64_t{rows[k]} * f < end; ++k) {
      const uint64_t lo = std::max<uint64_t>(uint64_t{rows[k]} * f, offset);
      const uint64_t hi = std::min<uint64_t>(uint64_t{rows[k] + 1} * f, end);
      std::memcpy(ds.codes.data() + k * f + (lo - uint64_t{rows[k]} * f), b + (lo - offset), hi - lo);
      if (hi == uint64_t{rows[k] + 1} * f) next = k + 1;
    }
    offset = end;
  }));
  return ds;
}

namespace {

std::string FashionMnistPrefix(Split split, const std::string& dir) {
  return dir + (split == Split::kTrain ? "/train" : "/t10k");
}

Result<Dataset> CheckFashionMnist(Result<Dataset> ds, const std::string& dir) {
  if (!ds.ok()) return ds.error().WithContext("Fashion-MNIST");
  if (ds->num_features != 784 || ds->num_classes > 10) {
    return InvalidArgumentError("Fashion-MNIST in " + dir + ": expected 28x28 images and labels 0..9, got " +
                                std::to_string(ds->num_features) + " features and " +
                                std::to_string(ds->num_classes) + " classes");
  }
  ds->num_classes = 10;
  return ds;
}

}  // namespace

// A data_dir that names a dataset manifest (frugal/data/table.h) is loaded
// through it, so every front end that reads Fashion-MNIST from a directory
// trains on any declared table the same way.
Result<Dataset> LoadFashionMnist(Split split, const std::string& dir) {
  if (IsDatasetManifest(dir)) return LoadDataSplit(split, dir);
  const std::string prefix = FashionMnistPrefix(split, dir);
  return CheckFashionMnist(LoadIdx(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz"), dir);
}

Result<std::vector<int32_t>> LoadFashionMnistLabels(Split split, const std::string& dir) {
  if (IsDatasetManifest(dir)) {
    FRUGAL_ASSIGN_OR_RETURN(Dataset ds, LoadDataSplit(split, dir));
    return std::move(ds.labels);
  }
  auto labels = LoadIdxLabels(FashionMnistPrefix(split, dir) + "-labels-idx1-ubyte.gz");
  if (!labels.ok()) return labels.error().WithContext("Fashion-MNIST");
  return labels;
}

Result<Dataset> LoadFashionMnistRows(Split split, std::span<const uint32_t> rows, const std::string& dir) {
  if (IsDatasetManifest(dir)) {
    FRUGAL_ASSIGN_OR_RETURN(Dataset all, LoadDataSplit(split, dir));
    Dataset out;
    out.num_features = all.num_features;
    out.num_classes = all.num_classes;
    for (size_t k = 0; k < rows.size(); ++k) {
      if (rows[k] >= all.size() || (k > 0 && rows[k] <= rows[k - 1])) {
        return InvalidArgumentError("row " + std::to_string(rows[k]) + " is out of range or out of order (" +
                                    std::to_string(all.size()) + " rows in " + dir + ")");
      }
      out.labels.push_back(all.labels[rows[k]]);
      out.features.insert(out.features.end(), all.row(rows[k]), all.row(rows[k]) + all.num_features);
    }
    return out;
  }
  const std::string prefix = FashionMnistPrefix(split, dir);
  return CheckFashionMnist(
      LoadIdxRows(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz", rows), dir);
}

}  // namespace frugal
