#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/sha256.h"

using namespace tl;
namespace fs = std::filesystem;

// FIPS 180-4 examples (NIST "SHA256.pdf" / "SHA2_Additional.pdf") and the empty message.
TEST_CASE("sha256: FIPS 180-4 test vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the padding no longer fits in the first block, so a second block is needed.
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: streaming in uneven pieces equals the one-shot hash") {
  std::string message;
  for (int i = 0; i < 1000; ++i) message += static_cast<char>((i * 131 + 7) % 256);
  std::string expected = sha256_hex(message);
  // Every split point exercises the partial-buffer paths (0..63 bytes buffered, exact block boundaries).
  for (size_t split = 0; split <= 200; ++split) {
    Sha256 h;
    h.update(message.data(), split);
    h.update(message.data() + split, 0);
    h.update(message.data() + split, message.size() - split);
    REQUIRE(h.finish_hex() == expected);
  }
  // Byte at a time through the 1M 'a' message's shorter cousin: lengths 55, 56, 63, 64, 65 around padding edges.
  for (size_t n : {55, 56, 63, 64, 65, 119, 120}) {
    std::string m(n, 'x');
    Sha256 h;
    for (char c : m) h.update(&c, 1);
    CHECK(h.finish_hex() == sha256_hex(m));
  }
  Sha256 done;
  done.finish();
  CHECK_THROWS_AS(done.update("x"), Error);
}

TEST_CASE("sha256: files") {
  fs::path path = fs::temp_directory_path() / ("tl_test_sha256_" + std::to_string(::getpid()));
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string((1 << 20) + 3, 'a');  // one full read chunk plus a tail
  }
  CHECK(sha256_file(path.string()) == sha256_hex(std::string((1 << 20) + 3, 'a')));
  fs::remove(path);
  std::string expected_error = path.string() + ": cannot open";
  CHECK_THROWS_WITH_AS(sha256_file(path.string()), doctest::Contains(expected_error.c_str()), Error);

  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent (the real checkpoint's hash is not checked)");
    return;
  }
  // The published hash of the project's ResNet18 checkpoint (shared/data/README.md section 3a).
  CHECK(sha256_file(data + "/weights/resnet18-miniimagenet.pth") ==
        "d593f2368c6f11f73866c20f8d48ca4ca3c52e5b4b0e3fffc6fd131e0e483988");
}
