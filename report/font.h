#pragma once
// The embedded bitmap font of the report images: printable ASCII (32..126) in a 5x9 cell. Capitals and digits
// are 7 rows tall above the baseline; rows 7 and 8 hold descenders (g, j, p, q, y, comma, underscore).
#include <cstdint>
#include <string>

namespace tl::report::font {

constexpr int kGlyphWidth = 5;    // columns of ink; bit 4 of a row byte is the leftmost column
constexpr int kGlyphHeight = 9;   // rows, top to bottom
constexpr int kAscent = 7;        // rows above the baseline
constexpr int kAdvance = 6;       // glyph width plus one column of spacing
constexpr int kLineHeight = 11;   // glyph height plus two rows of spacing

// The kGlyphHeight row bytes of a printable ASCII character; anything else draws as '?'.
const uint8_t* glyph(char c);

// The text the font can show: one '?' per non-ASCII UTF-8 code point or control character.
std::string printable(const std::string& utf8);

// Pixel width of printable(text) at an integer scale, without the trailing spacing column.
int text_width(const std::string& text, int scale = 1);
// `text` shortened with a trailing "..." so it is at most max_pixels wide at this scale ("" if nothing fits).
std::string fit_text(const std::string& text, int max_pixels, int scale = 1);

}  // namespace tl::report::font
