#pragma once
// Internal to the unpickler (weights/pickle.h): the bytes of one pickle and the read position. Every read is
// checked against the bytes that remain before anything is read. Inline: the opcode loop calls these per opcode.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "engine/error.h"
#include "weights/pickle_builder.h"
#include "weights/pickle_text.h"

namespace tl::pickle::detail {

class Input {
 public:
  Input(const uint8_t* data, size_t size, const Position& at) : data_(data), size_(size), at_(at) {}

  size_t size() const { return size_; }
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  uint8_t next_byte() { return data_[pos_++]; }  // the caller checks remaining() first

  const uint8_t* take(uint64_t n) {
    if (n > remaining()) at_.fail(str("truncated: needs ", n, " argument bytes, only ", remaining(), " left"));
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  uint64_t read_le(int n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  std::string_view take_text(uint64_t n) { return {reinterpret_cast<const char*>(take(n)), static_cast<size_t>(n)}; }
  // The argument of a text opcode: the bytes up to the next newline, which is consumed but not returned.
  std::string_view read_line() {
    const void* nl = std::memchr(data_ + pos_, '\n', remaining());
    if (!nl) at_.fail("truncated: no newline ends the argument");
    size_t n = static_cast<const uint8_t*>(nl) - (data_ + pos_);
    std::string_view line = take_text(n);
    ++pos_;
    return line;
  }
  uint64_t read_memo_key_line() {
    std::string_view line = read_line();
    int64_t key;
    if (!parse_int64(line, key) || key < 0) at_.fail(str("bad memo key '", printable(line), "'"));
    return static_cast<uint64_t>(key);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const Position& at_;
};

}  // namespace tl::pickle::detail
