#pragma once
// Internal to the unpickler (weights/pickle.h): text for its messages, and the decoding of protocol 0's text
// arguments. The decoders return nullptr on success, else what is wrong with the argument; the caller reports it
// as the error of the opcode being run.
#include <cstdint>
#include <string>
#include <string_view>

namespace tl::pickle::detail {

// "MARK", "BINUNICODE", ...; nullptr for a byte that is no opcode.
const char* opcode_name(uint8_t op);

// Text from the input as it may appear in a message: printable ASCII kept, other bytes as \xNN, cut at 200.
std::string printable(std::string_view text);

// A whole decimal integer ("-12"), as the text opcodes write it; false when malformed or beyond int64.
bool parse_int64(std::string_view s, int64_t& out);

// Python's codecs.escape_decode, which STRING arguments go through.
const char* escape_decode(std::string_view s, std::string& out);

// Python's raw-unicode-escape codec, which UNICODE arguments go through: bytes are Latin-1 code points, except
// \uXXXX and \UXXXXXXXX after an odd number of backslashes. `out` is UTF-8.
const char* raw_unicode_escape_decode(std::string_view s, std::string& out);

}  // namespace tl::pickle::detail
