#pragma once
// Confusion matrices of a classifier: counts[true][predicted] as CSV and as a heat map (colour = the cell's share
// of its true class, the count written in the cell, class names on both axes).
#include <cstdint>
#include <string>
#include <vector>

#include "report/canvas.h"

namespace tl::report {

// Header "true/predicted,<class>,...", then one row per true class: "<class>,<count>,...". Fields holding a comma,
// quote or line break are quoted as RFC 4180 says. Written atomically.
void write_confusion_csv(const std::string& path, const std::vector<std::string>& classes,
                         const std::vector<std::vector<int64_t>>& counts);
void write_confusion_png(const std::string& path, const std::vector<std::string>& classes,
                         const std::vector<std::vector<int64_t>>& counts);

// Where the heat map's cells landed: cell (t, p) covers [left + p*cell, +cell) x [top + t*cell, +cell).
struct ConfusionLayout {
  int left = 0, top = 0, cell = 0;
};
// The fraction-to-colour map of the cells: 0 is near white, 1 dark blue.
uint32_t heat_color(double fraction);
Canvas render_confusion(const std::vector<std::string>& classes, const std::vector<std::vector<int64_t>>& counts,
                        ConfusionLayout* layout = nullptr);

}  // namespace tl::report
