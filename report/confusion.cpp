#include "report/confusion.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "report/font.h"
#include "report/plot.h"
#include "report/png_writer.h"

namespace tl::report {
namespace {

void check_matrix(const std::vector<std::string>& classes, const std::vector<std::vector<int64_t>>& counts) {
  TL_CHECK(!classes.empty(), "confusion matrix: no classes");
  TL_CHECK(counts.size() == classes.size(), "confusion matrix: ", classes.size(), " classes but ", counts.size(),
           " rows of counts");
  for (size_t t = 0; t < counts.size(); ++t) {
    TL_CHECK(counts[t].size() == classes.size(), "confusion matrix: row ", t, " ('", classes[t], "') has ",
             counts[t].size(), " counts, expected ", classes.size());
    for (size_t p = 0; p < counts[t].size(); ++p)
      TL_CHECK(counts[t][p] >= 0, "confusion matrix: count [", t, "][", p, "] is negative (", counts[t][p], ")");
  }
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"') quoted += '"';  // a quote inside a quoted field is doubled
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

// "1234", or "12.3k" / "4M" when the full number is too wide for a cell.
std::string compact_count(int64_t n) {
  if (n < 1000) return std::to_string(n);
  const char* units[] = {"k", "M", "G", "T", "P", "E"};
  double v = static_cast<double>(n);
  int unit = -1;
  while (v >= 999.95 && unit < 5) v /= 1000, ++unit;
  char text[32];
  std::snprintf(text, sizeof text, v < 99.95 ? "%.1f%s" : "%.0f%s", v, units[unit]);
  return text;
}

void name_errors(const std::string& path, const auto& write) {
  try {
    write();
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind(path + ": ", 0) == 0) throw;
    throw Error(str(path, ": ", what));
  }
}

}  // namespace

uint32_t heat_color(double fraction) {
  // Five stops of a white-to-navy ramp, interpolated per channel.
  static const uint32_t stops[] = {0xF7FBFF, 0xC6DBEF, 0x6BAED6, 0x2171B5, 0x08306B};
  double f = std::clamp(std::isfinite(fraction) ? fraction : 0.0, 0.0, 1.0) * 4;
  int i = std::min(3, static_cast<int>(f));
  double t = f - i;
  uint32_t out = 0;
  for (int shift = 16; shift >= 0; shift -= 8) {
    double a = (stops[i] >> shift) & 0xFF, b = (stops[i + 1] >> shift) & 0xFF;
    out |= static_cast<uint32_t>(std::lround(a + (b - a) * t)) << shift;
  }
  return out;
}

Canvas render_confusion(const std::vector<std::string>& classes, const std::vector<std::vector<int64_t>>& counts,
                        ConfusionLayout* layout) {
  check_matrix(classes, counts);
  int n = static_cast<int>(classes.size());
  TL_CHECK(n <= 4096, "confusion matrix: ", n, " classes is more than the heat map draws (4096)");
  int cell = std::clamp(720 / n, 2, 72);
  int s = 2, text_h = font::kGlyphHeight * s;
  // Class names at scale 2 when rows are tall enough, else scale 1, else (hundreds of classes) none.
  int name_scale = cell >= font::kGlyphHeight * 2 + 2 ? 2 : cell >= font::kGlyphHeight + 1 ? 1 : 0;
  std::vector<std::string> names;
  int name_w = 0;
  bool names_fit_across = true;  // every name fits horizontally under its column
  for (const std::string& c : classes) {
    names.push_back(name_scale ? font::fit_text(c, font::text_width(std::string(16, 'x'), name_scale), name_scale)
                               : std::string());
    name_w = std::max(name_w, font::text_width(names.back(), std::max(name_scale, 1)));
    names_fit_across = names_fit_across && font::text_width(names.back(), std::max(name_scale, 1)) <= cell - 4;
  }
  int name_h = name_scale == 0 ? 0 : names_fit_across ? font::kGlyphHeight * name_scale : name_w;

  const std::string title = "Confusion matrix", x_label = "Predicted", y_label = "True";
  ConfusionLayout at;
  at.cell = cell;
  at.left = 12 + text_h + 10 + name_w + 8;
  at.top = 12 + text_h + 14;
  int grid = n * cell;
  int bar_x = at.left + grid + 24, bar_w = 16 * s / 2;
  int width = std::max(bar_x + bar_w + 8 + font::text_width("100%", s) + 12,
                       at.left + font::text_width(title, s) + 12);
  int height = at.top + grid + 8 + name_h + 10 + text_h + 12;
  Canvas canvas(width, height);

  for (int t = 0; t < n; ++t) {
    int64_t total = 0;
    for (int64_t c : counts[t]) total += c;
    for (int p = 0; p < n; ++p) {
      double fraction = total > 0 ? static_cast<double>(counts[t][p]) / static_cast<double>(total) : 0.0;
      int x = at.left + p * cell, y = at.top + t * cell;
      canvas.fill_rect(x, y, cell, cell, heat_color(fraction));
      // The count in the middle of the cell at the largest scale it fits; dark cells get white text.
      uint32_t ink = fraction > 0.5 ? 0xFFFFFF : kTextColor;
      for (const std::string& text : {std::to_string(counts[t][p]), compact_count(counts[t][p])}) {
        int scale = cell >= 40 ? 2 : 1, w = font::text_width(text, scale);
        if (font::kAscent * scale > cell - 2 || w > cell - 4) continue;
        canvas.draw_text(x + (cell - w) / 2, y + (cell - font::kAscent * scale) / 2, text, ink, scale);
        break;
      }
    }
  }
  canvas.stroke_rect(at.left - 1, at.top - 1, grid + 2, grid + 2, kAxisColor);

  if (name_scale) {
    int ns = name_scale;
    for (int i = 0; i < n; ++i) {
      int w = font::text_width(names[i], ns);
      canvas.draw_text(at.left - 8 - w, at.top + i * cell + (cell - font::kAscent * ns) / 2, names[i], kTextColor, ns);
      int cx = at.left + i * cell + cell / 2;
      if (names_fit_across)
        canvas.draw_text(cx - w / 2, at.top + grid + 8, names[i], kTextColor, ns);
      else
        canvas.draw_text_up(cx - font::kAscent * ns / 2, at.top + grid + 8, names[i], kTextColor, ns);
    }
  }
  int title_x = std::max(12, at.left + grid / 2 - font::text_width(title, s) / 2);
  canvas.draw_text(title_x, 12, title, kTextColor, s);
  canvas.draw_text(title_x + 1, 12, title, kTextColor, s);
  canvas.draw_text(at.left + grid / 2 - font::text_width(x_label, s) / 2, height - 12 - text_h, x_label, kTextColor, s);
  canvas.draw_text_up(12, at.top + grid / 2 - font::text_width(y_label, s) / 2, y_label, kTextColor, s);

  // Colour bar: share of the true class, 100% at the top.
  for (int y = 0; y < grid; ++y)
    canvas.fill_rect(bar_x, at.top + y, bar_w, 1, heat_color(1.0 - static_cast<double>(y) / std::max(grid - 1, 1)));
  canvas.stroke_rect(bar_x - 1, at.top - 1, bar_w + 2, grid + 2, kAxisColor);
  canvas.draw_text(bar_x + bar_w + 6, at.top, "100%", kTextColor, s);
  canvas.draw_text(bar_x + bar_w + 6, at.top + grid - font::kAscent * s, "0%", kTextColor, s);

  if (layout) *layout = at;
  return canvas;
}

void write_confusion_csv(const std::string& path, const std::vector<std::string>& classes,
                         const std::vector<std::vector<int64_t>>& counts) {
  name_errors(path, [&] {
    check_matrix(classes, counts);
    std::string text = "true/predicted";
    for (const std::string& c : classes) {
      text += ',';
      text += csv_field(c);
    }
    text += "\n";
    for (size_t t = 0; t < classes.size(); ++t) {
      text += csv_field(classes[t]);
      for (int64_t c : counts[t]) {
        text += ',';
        text += std::to_string(c);
      }
      text += "\n";
    }
    write_file_atomically(path, text.data(), text.size());
  });
}

void write_confusion_png(const std::string& path, const std::vector<std::string>& classes,
                         const std::vector<std::vector<int64_t>>& counts) {
  name_errors(path, [&] {
    Canvas canvas = render_confusion(classes, counts);
    write_png(path, canvas.width(), canvas.height(), canvas.rgb());
  });
}

}  // namespace tl::report
