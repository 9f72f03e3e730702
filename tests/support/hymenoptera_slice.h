#pragma once
// Small, fixed slices of the ants/bees images for end-to-end app tests.
#include <filesystem>
#include <string>

namespace tl::test {

// The first `per_class` files (sorted, JPEGs only) of each class of <src>/<split> copied to <dst>/<split>.
void copy_slice(const std::filesystem::path& src, const std::filesystem::path& dst, const std::string& split,
                int per_class);

}  // namespace tl::test
