#include "report/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/error.h"
#include "report/font.h"
#include "report/png_writer.h"

namespace tl::report {

Point ChartFrame::to_pixel(double x, double y) const {
  double x0 = left + kInset, x1 = right - kInset, y0 = bottom - kInset, y1 = top + kInset;
  return {x0 + (x - x_min) / (x_max - x_min) * (x1 - x0), y0 + (y - y_min) / (y_max - y_min) * (y1 - y0)};
}

Ticks nice_ticks(double lo, double hi, int target) {
  TL_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi && target > 0, "nice_ticks: bad range [", lo, ", ", hi,
           "] or target ", target);
  double raw = hi / target - lo / target;  // written so that a range near the double limit cannot overflow
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double fraction = raw / magnitude;
  Ticks ticks;
  // Rounded to the nearest round step (Heckbert's "nice numbers"), so the count stays within about 1.5x target.
  ticks.step = magnitude * (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10);
  // The slack keeps a bound that is a multiple of the step (0.3 / 0.1 = 2.9999999999999996) from adding a tick.
  double first = std::floor(lo / ticks.step + 1e-9), last = std::ceil(hi / ticks.step - 1e-9);
  for (double k = first; k <= last; ++k) ticks.values.push_back(k * ticks.step);
  return ticks;
}

std::string format_tick(double value, double step) {
  if (std::abs(value) < step * 1e-6) value = 0;  // no "-0" or 1e-17 from k * step rounding
  int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  char text[64];
  if (decimals > 6 || std::abs(value) >= 1e7)
    std::snprintf(text, sizeof text, "%.3g", value);
  else
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

namespace {

// The finite y range of a chart's data, widened when it is empty or (nearly) constant.
std::pair<double, double> data_range(const Chart& chart) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : chart.series)
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (lo > hi) return {0, 1};
  if (hi - lo <= 1e-9 * std::max(std::abs(lo), std::abs(hi))) {
    double pad = lo != 0 ? std::abs(lo) * 0.1 : 1;
    return {lo - pad, hi + pad};
  }
  return {lo, hi};
}

// Integer ticks (epochs): multiples of a round step within [frame.x_min, frame.x_max].
std::vector<double> epoch_ticks(double x_min, double x_max, int target) {
  double step = x_max > x_min ? std::max(1.0, nice_ticks(x_min, x_max, target).step) : 1;
  std::vector<double> ticks;
  for (double k = std::ceil(x_min / step); k * step <= x_max; ++k) ticks.push_back(k * step);
  return ticks;
}

struct Style {
  int scale;          // text scale
  double thickness;   // series line width
  double marker;      // marker radius
  bool markers;       // draw a marker at every point (few points)
};

// Each run of consecutive finite values, as pixel points.
std::vector<std::vector<Point>> runs(const Series& s, const ChartFrame& frame) {
  std::vector<std::vector<Point>> out(1);
  for (size_t i = 0; i < s.y.size(); ++i) {
    if (std::isfinite(s.y[i])) out.back().push_back(frame.to_pixel(static_cast<double>(i + 1), s.y[i]));
    else if (!out.back().empty()) out.emplace_back();
  }
  if (out.back().empty()) out.pop_back();
  return out;
}

void draw_series_line(Canvas& canvas, const std::vector<Point>& points, const Series& s, const Style& style) {
  double dash = s.dashed ? 4 * style.thickness : 0, gap = s.dashed ? 3 * style.thickness : 0;
  canvas.draw_polyline(points, s.rgb_color, style.thickness, dash, gap);
  for (const Point& p : points)
    if (style.markers || points.size() == 1) canvas.fill_circle(p, style.marker, s.rgb_color);
}

// Puts the legend in the inside corner of the frame that covers the fewest samples of the drawn lines.
void draw_legend(Canvas& canvas, const Chart& chart, const ChartFrame& frame, const Style& style,
                 const std::vector<Point>& samples) {
  if (chart.series.empty()) return;
  int s = style.scale, pad = 6 * s, swatch = 14 * s, row = font::kLineHeight * s + 2;
  int max_label = std::max(20, (frame.right - frame.left) / 2 - swatch - 3 * pad);
  std::vector<std::string> labels;
  int label_w = 0;
  for (const Series& series : chart.series) {
    labels.push_back(font::fit_text(series.label, max_label, s));
    label_w = std::max(label_w, font::text_width(labels.back(), s));
  }
  int w = pad + swatch + pad + label_w + pad, h = pad + static_cast<int>(labels.size()) * row - 2 * s + pad;
  int margin = ChartFrame::kInset / 2 + 2;
  int xs[2] = {frame.right - margin - w, frame.left + margin + 1};
  int ys[2] = {frame.top + margin + 1, frame.bottom - margin - h};
  int best_x = xs[0], best_y = ys[0];
  size_t best = SIZE_MAX;
  for (int y : ys)
    for (int x : xs) {
      size_t covered = std::count_if(samples.begin(), samples.end(), [&](const Point& p) {
        return p.x >= x - 3 && p.x <= x + w + 3 && p.y >= y - 3 && p.y <= y + h + 3;
      });
      if (covered < best) best = covered, best_x = x, best_y = y;
    }
  canvas.fill_rect(best_x, best_y, w, h, 0xFFFFFF);
  canvas.stroke_rect(best_x, best_y, w, h, 0xBBBBBB);
  for (size_t i = 0; i < labels.size(); ++i) {
    int top = best_y + pad + static_cast<int>(i) * row;
    double mid = top + font::kAscent * s / 2.0;
    std::vector<Point> line = {{best_x + pad + 0.0, mid}, {best_x + pad + swatch + 0.0, mid}};
    Style one = style;
    one.markers = false;  // the marker in the middle of the swatch is drawn below
    draw_series_line(canvas, line, chart.series[i], one);
    if (style.markers) canvas.fill_circle({best_x + pad + swatch / 2.0, mid}, style.marker, chart.series[i].rgb_color);
    canvas.draw_text(best_x + pad + swatch + pad, top, labels[i], kTextColor, s);
  }
}

void draw_chart(Canvas& canvas, const Chart& chart, int panel_x, int panel_w, ChartFrame& frame) {
  int height = canvas.height();
  Style style;
  style.scale = std::min(panel_w, height) >= 300 ? 2 : 1;
  int s = style.scale, text_h = font::kGlyphHeight * s, tick = 5;
  style.thickness = s == 2 ? 2.5 : 1.5;
  style.marker = style.thickness + 0.5;
  size_t points = 0;
  for (const Series& series : chart.series) points = std::max(points, series.y.size());
  style.markers = points <= 30;

  // Layout from the outside in: title on top, x ticks and label below, y label and tick labels on the left.
  frame.top = 10 + (chart.title.empty() ? 0 : text_h + 10);
  frame.bottom = height - 1 - (tick + 4 + text_h + (chart.x_label.empty() ? 0 : 8 + text_h) + 10);
  auto [lo, hi] = data_range(chart);
  int plot_h = frame.bottom - frame.top - 2 * ChartFrame::kInset;
  Ticks y_ticks = nice_ticks(lo, hi, std::clamp(plot_h / (30 * s), 2, 8));
  frame.y_min = y_ticks.values.front();
  frame.y_max = y_ticks.values.back();
  std::vector<std::string> y_text;
  int y_text_w = 0;
  for (double v : y_ticks.values) {
    y_text.push_back(format_tick(v, y_ticks.step));
    y_text_w = std::max(y_text_w, font::text_width(y_text.back(), s));
  }
  frame.left = panel_x + 10 + (chart.y_label.empty() ? 0 : text_h + 8) + y_text_w + 4 + tick;
  frame.right = panel_x + panel_w - 1 - 16;
  frame.x_min = points <= 1 ? 0.5 : 1;
  frame.x_max = points <= 1 ? 1.5 : static_cast<double>(points);
  TL_CHECK(frame.right - frame.left > 4 * ChartFrame::kInset && frame.bottom - frame.top > 4 * ChartFrame::kInset,
           "plot: a ", panel_w, "x", height, " panel leaves no room for the chart '", chart.title, "'");

  // Grid and ticks.
  for (size_t i = 0; i < y_ticks.values.size(); ++i) {
    int y = static_cast<int>(std::lround(frame.to_pixel(frame.x_min, y_ticks.values[i]).y));
    canvas.fill_rect(frame.left + 1, y, frame.right - frame.left - 1, 1, kGridColor);
    canvas.fill_rect(frame.left - tick, y, tick, 1, kAxisColor);
    canvas.draw_text(frame.left - tick - 4 - font::text_width(y_text[i], s), y - font::kAscent * s / 2, y_text[i],
                     kTextColor, s);
  }
  int label_w = font::text_width("0000", s);
  int x_target = std::max(1, (frame.right - frame.left) / (label_w + 24 * s));
  for (double v : epoch_ticks(frame.x_min, frame.x_max, x_target)) {
    int x = static_cast<int>(std::lround(frame.to_pixel(v, frame.y_min).x));
    std::string text = format_tick(v, 1);
    canvas.fill_rect(x, frame.top + 1, 1, frame.bottom - frame.top - 1, kGridColor);
    canvas.fill_rect(x, frame.bottom + 1, 1, tick, kAxisColor);
    canvas.draw_text(x - font::text_width(text, s) / 2, frame.bottom + tick + 4, text, kTextColor, s);
  }
  canvas.stroke_rect(frame.left, frame.top, frame.right - frame.left + 1, frame.bottom - frame.top + 1, kAxisColor);

  // Series, then the legend over them.
  std::vector<Point> samples;
  for (const Series& series : chart.series)
    for (const auto& run : runs(series, frame)) {
      draw_series_line(canvas, run, series, style);
      samples.push_back(run.front());
      for (size_t i = 1; i < run.size(); ++i) {
        double len = std::hypot(run[i].x - run[i - 1].x, run[i].y - run[i - 1].y);
        for (double t = 2; t <= len; t += 2)
          samples.push_back({run[i - 1].x + (run[i].x - run[i - 1].x) * t / len,
                             run[i - 1].y + (run[i].y - run[i - 1].y) * t / len});
      }
    }
  draw_legend(canvas, chart, frame, style, samples);
  if (samples.empty()) {
    int w = font::text_width("no data", s);
    canvas.draw_text((frame.left + frame.right - w) / 2, (frame.top + frame.bottom) / 2 - text_h / 2, "no data",
                     0x888888, s);
  }

  // Title (bold by a one-pixel double strike) and axis labels, shortened to the room they have.
  int frame_w = frame.right - frame.left, frame_mid = (frame.left + frame.right) / 2;
  std::string title = font::fit_text(chart.title, frame_w, s);
  int title_x = frame_mid - font::text_width(title, s) / 2;
  canvas.draw_text(title_x, 10, title, kTextColor, s);
  canvas.draw_text(title_x + 1, 10, title, kTextColor, s);
  std::string x_label = font::fit_text(chart.x_label, frame_w, s);
  canvas.draw_text(frame_mid - font::text_width(x_label, s) / 2, frame.bottom + tick + 4 + text_h + 8, x_label,
                   kTextColor, s);
  std::string y_label = font::fit_text(chart.y_label, frame.bottom - frame.top, s);
  canvas.draw_text_up(panel_x + 10, (frame.top + frame.bottom) / 2 - font::text_width(y_label, s) / 2, y_label,
                      kTextColor, s);
}

}  // namespace

Canvas render_charts(const std::vector<Chart>& charts, int width, int height, std::vector<ChartFrame>* frames) {
  TL_CHECK(!charts.empty(), "plot: no charts to draw");
  int n = static_cast<int>(charts.size());
  TL_CHECK(width >= 160 * n && height >= 120, "plot: ", width, "x", height, " is too small for ", n,
           " charts (each needs at least 160x120)");
  Canvas canvas(width, height);
  std::vector<ChartFrame> drawn(charts.size());
  for (int i = 0; i < n; ++i) {
    int x0 = static_cast<int>(static_cast<int64_t>(width) * i / n);
    int x1 = static_cast<int>(static_cast<int64_t>(width) * (i + 1) / n);
    draw_chart(canvas, charts[i], x0, x1 - x0, drawn[i]);
  }
  if (frames) *frames = std::move(drawn);
  return canvas;
}

void plot_charts_png(const std::string& path, const std::vector<Chart>& charts, int width, int height) {
  try {
    Canvas canvas = render_charts(charts, width, height);
    write_png(path, canvas.width(), canvas.height(), canvas.rgb());
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind(path + ": ", 0) == 0) throw;
    throw Error(str(path, ": ", what));
  }
}

}  // namespace tl::report
