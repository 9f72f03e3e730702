#pragma once
// An RGB raster for the report images: filled rectangles, thick (optionally dashed) lines and bitmap text.
// Colours are 0xRRGGBB. Drawing outside the canvas is clipped, never an error.
#include <cstdint>
#include <string>
#include <vector>

namespace tl::report {

struct Point {
  double x = 0, y = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, uint32_t background = 0xFFFFFF);

  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& rgb() const { return rgb_; }  // width*height*3 bytes, rows top to bottom

  uint32_t pixel(int x, int y) const;  // 0xRRGGBB; throws outside the canvas
  void set_pixel(int x, int y, uint32_t color);

  // Pixels [x, x+w) x [y, y+h).
  void fill_rect(int x, int y, int w, int h, uint32_t color);
  // A one-pixel outline around [x, x+w) x [y, y+h).
  void stroke_rect(int x, int y, int w, int h, uint32_t color);

  // Every pixel whose centre lies within thickness/2 of the segment (pixel centres are at integer coordinates),
  // so a thickness-1 horizontal line at integer y is exactly one row.
  void draw_line(Point a, Point b, uint32_t color, double thickness = 1);
  // Connected segments; with dash > 0 the line alternates `dash` pixels drawn and `gap` pixels skipped, the
  // pattern running continuously across vertices.
  void draw_polyline(const std::vector<Point>& points, uint32_t color, double thickness = 1, double dash = 0,
                     double gap = 0);
  void fill_circle(Point centre, double radius, uint32_t color);

  // Text (see report/font.h) with its top-left corner at (x, y), each font pixel a scale x scale block.
  void draw_text(int x, int y, const std::string& text, uint32_t color, int scale = 1);
  // Text rotated a quarter turn counter-clockwise, reading bottom to top; (x, y) is the top-left of the
  // rotated block, which is font height wide and text width tall.
  void draw_text_up(int x, int y, const std::string& text, uint32_t color, int scale = 1);

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;
};

}  // namespace tl::report
