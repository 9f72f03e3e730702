#include "loaders/idx_images.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "engine/error.h"
#include "loaders/idx.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

std::string find_file(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  if (fs::exists(dir / name, ec)) return (dir / name).string();
  if (fs::exists(dir / (name + ".gz"), ec)) return (dir / (name + ".gz")).string();
  throw Error(str("load_idx_image_splits: found neither ", (dir / name).string(), " nor ",
                  (dir / (name + ".gz")).string()));
}

bool mentions_fashion(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text.find("fashion") != std::string::npos;
}

// Fashion-MNIST and MNIST files have the same names; the folder (Debian: /usr/share/datasets/fashion-mnist,
// zalando's repository: data/fashion) or a file beside them (Kaggle: fashion-mnist_train.csv) tells them apart.
bool looks_like_fashion_mnist(const fs::path& dir) {
  std::error_code ec;
  fs::path absolute = fs::weakly_canonical(dir, ec);
  if (mentions_fashion((ec ? dir : absolute).string())) return true;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (mentions_fashion(it->path().filename().string())) return true;
  }
  return false;
}

Dataset read_split(const fs::path& dir, const std::string& split, int64_t limit) {
  const std::string image_path = find_file(dir, split + "-images-idx3-ubyte");
  const std::string label_path = find_file(dir, split + "-labels-idx1-ubyte");
  IdxArray images = read_idx(image_path);
  IdxArray labels = read_idx(label_path);
  TL_CHECK(images.dims.size() == 3, "load_idx_image_splits: ", image_path, ": expected images [N,H,W], got ",
           images.dims.size(), " dimensions");
  TL_CHECK(labels.dims.size() == 1, "load_idx_image_splits: ", label_path, ": expected labels [N], got ",
           labels.dims.size(), " dimensions");
  const int64_t count = images.dims[0], height = images.dims[1], width = images.dims[2];
  TL_CHECK(labels.dims[0] == count, "load_idx_image_splits: count mismatch: ", image_path, " has ", count,
           " images but ", label_path, " has ", labels.dims[0], " labels");
  TL_CHECK(height > 0 && width > 0 && height <= kMaxImageSide && width <= kMaxImageSide, "load_idx_image_splits: ",
           image_path, ": image size ", width, "x", height, " is not usable");
  const int64_t n = limit > 0 ? std::min(limit, count) : count;
  const size_t pixels = static_cast<size_t>(height * width);
  Dataset out;
  out.examples.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t label = labels.data[static_cast<size_t>(i)];
    TL_CHECK(label < 10, "load_idx_image_splits: ", label_path, ": label ", int(label), " at index ", i,
             " is out of range 0..9");
    auto image = std::make_shared<Image>();
    image->width = static_cast<int>(width);
    image->height = static_cast<int>(height);
    image->rgb.resize(pixels * 3);
    const uint8_t* gray = images.data.data() + static_cast<size_t>(i) * pixels;
    for (size_t p = 0; p < pixels; ++p) image->rgb[p * 3] = image->rgb[p * 3 + 1] = image->rgb[p * 3 + 2] = gray[p];
    Example ex;
    ex.path = image_path + "#" + std::to_string(i);
    ex.image = std::move(image);
    ex.label = label;
    out.examples.push_back(std::move(ex));
  }
  return out;
}

}  // namespace

DatasetSplits load_idx_image_splits(const std::string& dir, int64_t limit_per_split) {
  TL_CHECK(limit_per_split >= 0, "load_idx_image_splits: limit must be >= 0 (0 keeps everything), got ",
           limit_per_split);
  std::error_code ec;
  TL_CHECK(fs::is_directory(dir, ec), "load_idx_image_splits: ", dir,
           fs::exists(dir, ec) ? " is not a folder" : " does not exist");
  DatasetSplits out;
  if (looks_like_fashion_mnist(dir)) {
    out.classes = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  } else {
    for (int k = 0; k < 10; ++k) out.classes.push_back(std::to_string(k));
  }
  out.train = read_split(dir, "train", limit_per_split);
  out.test = read_split(dir, "t10k", limit_per_split);
  out.train.classes = out.val.classes = out.test.classes = out.classes;
  return out;
}

}  // namespace tl
