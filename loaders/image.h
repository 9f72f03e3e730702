#pragma once
// Image decoding: JPEG, PNG, BMP and GIF (first frame) through stb_image, always to 8-bit RGB.
// Grayscale is expanded to three equal channels and alpha is dropped without compositing, exactly as
// PIL's Image.convert("RGB") does, so a pipeline fed by decode_image() sees what torchvision's
// ImageFolder loader sees. Files are untrusted: a corrupt, empty, truncated or non-image file throws
// tl::Error naming the path and the reason, and dimensions are capped before anything is allocated.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height x width x 3, row-major (HWC)

  uint8_t at(int x, int y, int channel) const { return rgb[(static_cast<size_t>(y) * width + x) * 3 + channel]; }
};

// Limits checked from the header before decoding: a corrupt header must not make us allocate gigabytes.
constexpr int kMaxImageSide = 1 << 15;           // 32768 pixels per side
constexpr int64_t kMaxImagePixels = 1ll << 28;   // 268M pixels (805 MB of RGB)

// False when tl was built without stb_image (libstb-dev / TL_DEPS_DIR): decode_image() then throws.
bool image_decoding_supported();

Image decode_image(const std::string& path);
// The same from bytes in memory; `name` stands for the path in error messages.
Image decode_image_bytes(const uint8_t* data, size_t size, const std::string& name);

}  // namespace tl
