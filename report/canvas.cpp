#include "report/canvas.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "report/font.h"

namespace tl::report {

Canvas::Canvas(int width, int height, uint32_t background) : width_(width), height_(height) {
  TL_CHECK(width > 0 && height > 0 && width <= 32768 && height <= 32768, "canvas: size ", width, "x", height,
           " is outside 1..32768");
  rgb_.resize(static_cast<size_t>(width) * height * 3);
  fill_rect(0, 0, width, height, background);
}

uint32_t Canvas::pixel(int x, int y) const {
  TL_CHECK(x >= 0 && y >= 0 && x < width_ && y < height_, "canvas: pixel (", x, ",", y, ") is outside ", width_,
           "x", height_);
  const uint8_t* p = &rgb_[(static_cast<size_t>(y) * width_ + x) * 3];
  return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
}

void Canvas::set_pixel(int x, int y, uint32_t color) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  uint8_t* p = &rgb_[(static_cast<size_t>(y) * width_ + x) * 3];
  p[0] = static_cast<uint8_t>(color >> 16);
  p[1] = static_cast<uint8_t>(color >> 8);
  p[2] = static_cast<uint8_t>(color);
}

void Canvas::fill_rect(int x, int y, int w, int h, uint32_t color) {
  int x0 = std::max(x, 0), y0 = std::max(y, 0);
  int x1 = std::min(x + w, width_), y1 = std::min(y + h, height_);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) set_pixel(xx, yy, color);
}

void Canvas::stroke_rect(int x, int y, int w, int h, uint32_t color) {
  if (w <= 0 || h <= 0) return;
  fill_rect(x, y, w, 1, color);
  fill_rect(x, y + h - 1, w, 1, color);
  fill_rect(x, y, 1, h, color);
  fill_rect(x + w - 1, y, 1, h, color);
}

void Canvas::draw_line(Point a, Point b, uint32_t color, double thickness) {
  if (!std::isfinite(a.x) || !std::isfinite(a.y) || !std::isfinite(b.x) || !std::isfinite(b.y)) return;
  double r = std::max(thickness, 1.0) / 2;
  // Only the bounding box of the thick segment, clipped to the canvas, is visited.
  int x0 = std::max(0, static_cast<int>(std::floor(std::min(a.x, b.x) - r)));
  int x1 = std::min(width_ - 1, static_cast<int>(std::ceil(std::max(a.x, b.x) + r)));
  int y0 = std::max(0, static_cast<int>(std::floor(std::min(a.y, b.y) - r)));
  int y1 = std::min(height_ - 1, static_cast<int>(std::ceil(std::max(a.y, b.y) + r)));
  double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
  // A small slack so that a 1-pixel line through pixel centres keeps exactly the pixels it passes over.
  double limit = r * r + 1e-9;
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      double t = len2 > 0 ? std::clamp(((x - a.x) * dx + (y - a.y) * dy) / len2, 0.0, 1.0) : 0.0;
      double ex = a.x + t * dx - x, ey = a.y + t * dy - y;
      if (ex * ex + ey * ey <= limit) set_pixel(x, y, color);
    }
  }
}

void Canvas::draw_polyline(const std::vector<Point>& points, uint32_t color, double thickness, double dash,
                           double gap) {
  if (points.size() == 1) draw_line(points[0], points[0], color, thickness);
  double phase = 0;  // distance travelled within the current dash+gap period
  for (size_t i = 1; i < points.size(); ++i) {
    Point a = points[i - 1], b = points[i];
    if (dash <= 0 || gap <= 0) {
      draw_line(a, b, color, thickness);
      continue;
    }
    double len = std::hypot(b.x - a.x, b.y - a.y);
    double along = 0;
    while (along < len) {
      bool drawing = phase < dash;
      double step = std::min(len - along, drawing ? dash - phase : dash + gap - phase);
      if (drawing) {
        Point p{a.x + (b.x - a.x) * along / len, a.y + (b.y - a.y) * along / len};
        Point q{a.x + (b.x - a.x) * (along + step) / len, a.y + (b.y - a.y) * (along + step) / len};
        draw_line(p, q, color, thickness);
      }
      along += step;
      phase = std::fmod(phase + step, dash + gap);
    }
  }
}

void Canvas::fill_circle(Point centre, double radius, uint32_t color) { draw_line(centre, centre, color, 2 * radius); }

void Canvas::draw_text(int x, int y, const std::string& text, uint32_t color, int scale) {
  std::string shown = font::printable(text);
  for (size_t i = 0; i < shown.size(); ++i) {
    const uint8_t* rows = font::glyph(shown[i]);
    int gx = x + static_cast<int>(i) * font::kAdvance * scale;
    for (int row = 0; row < font::kGlyphHeight; ++row)
      for (int col = 0; col < font::kGlyphWidth; ++col)
        if (rows[row] & (0x10 >> col)) fill_rect(gx + col * scale, y + row * scale, scale, scale, color);
  }
}

void Canvas::draw_text_up(int x, int y, const std::string& text, uint32_t color, int scale) {
  std::string shown = font::printable(text);
  int height = font::text_width(shown, scale);
  // Glyph column c of character i goes up from the bottom; glyph row r goes right from the left edge.
  for (size_t i = 0; i < shown.size(); ++i) {
    const uint8_t* rows = font::glyph(shown[i]);
    int base = y + height - static_cast<int>(i) * font::kAdvance * scale;
    for (int row = 0; row < font::kGlyphHeight; ++row)
      for (int col = 0; col < font::kGlyphWidth; ++col)
        if (rows[row] & (0x10 >> col)) fill_rect(x + row * scale, base - (col + 1) * scale, scale, scale, color);
  }
}

}  // namespace tl::report
