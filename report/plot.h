#pragma once
// Line charts of training curves (accuracy, loss per epoch), side by side in one PNG: axes with round tick values,
// grid lines, a legend placed where it covers the fewest data, and markers at the points when there are few.
// Non-finite values are gaps in a line; a lone point between gaps is drawn as a dot.
#include <cstdint>
#include <string>
#include <vector>

#include "report/canvas.h"

namespace tl::report {

struct Series {
  std::string label;
  std::vector<double> y;  // x = 1..n (epochs)
  uint32_t rgb_color = 0;
  bool dashed = false;
};

struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
};

// Where a chart's data landed on the canvas: the axes frame [left, right] x [top, bottom] (the frame lines
// included) and the data ranges its inside shows.
struct ChartFrame {
  int left = 0, top = 0, right = 0, bottom = 0;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  static constexpr int kInset = 8;  // pixels between the frame and the extreme data values
  Point to_pixel(double x, double y) const;
};

// Round tick values covering [lo, hi] with about `target` intervals: step is 1, 2 or 5 times a power of ten and
// the ticks run from floor(lo/step) to ceil(hi/step) steps.
struct Ticks {
  double step = 1;
  std::vector<double> values;
};
Ticks nice_ticks(double lo, double hi, int target = 5);
// A tick value with as many decimals as the step needs ("0.25", "1200", "1e+08").
std::string format_tick(double value, double step);

// Colours used by the renderer (tests look for them).
constexpr uint32_t kAxisColor = 0x333333;
constexpr uint32_t kGridColor = 0xE3E3E3;
constexpr uint32_t kTextColor = 0x222222;

// Renders the charts side by side; `frames` (when given) receives each chart's frame.
Canvas render_charts(const std::vector<Chart>& charts, int width, int height,
                     std::vector<ChartFrame>* frames = nullptr);
void plot_charts_png(const std::string& path, const std::vector<Chart>& charts, int width = 1200, int height = 480);

}  // namespace tl::report
