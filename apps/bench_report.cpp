// tl bench output: the results as JSON (--json) and as markdown tables (stdout, --markdown), the latter made from
// the JSON form so that `tl bench --render FILE` prints a saved run exactly as the run did. With --reference (the
// JSON of bench/pytorch_reference.py) every model row gets PyTorch's figures beside ours and the ratio ours/theirs.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>

#include "apps/bench.h"
#include "engine/error.h"

namespace tl::app::bench {

Row& Row::text(const std::string& key, const std::string& value) { return this->value(key, json::Value(value)); }
Row& Row::number(const std::string& key, double value) {
  return std::isfinite(value) ? this->value(key, json::Value(value)) : null(key);
}
Row& Row::integer(const std::string& key, int64_t value) { return this->value(key, json::Value(value)); }
Row& Row::boolean(const std::string& key, bool value) { return this->value(key, json::Value(value)); }
Row& Row::null(const std::string& key) { return this->value(key, json::Value()); }
Row& Row::value(const std::string& key, json::Value value) {
  for (auto& [k, v] : fields_)
    if (k == key) {
      v = std::move(value);
      return *this;
    }
  fields_.emplace_back(key, std::move(value));
  return *this;
}

json::Value results_json(const Results& r, const std::string& command, const Options& o) {
  Row doc;
  doc.text("tool", "tl bench").integer("format", 1).text("command", command);
  doc.text("timing", str("median of the timed calls after warm-up calls (counts in each row); CUDA events on the "
                         "context's stream around each call on the GPU, the steady clock on the CPU; inputs already "
                         "on the device"));
  doc.text("flops_counted", "2 per multiply-add of Conv2d and Linear layers, from the layer shapes "
                            "(layers/models/flops.h); bias, BatchNorm, ReLU, pooling, loss and optimizer not counted");
  doc.text("training_flops", "per conv/linear layer: forward F, + F backward-filter when its weight trains, + F "
                             "backward-data when anything below it trains (the engine's backward plan)");
  doc.boolean("tf32", o.tf32);
  doc.text("optimizer", "SGD momentum 0.9, lr 1e-4; softmax cross-entropy on random labels; zero_grad in the step");
  doc.value("devices", json::Value(r.devices));
  json::Array rates;
  for (const MatrixRate& m : r.matrix_rates) {
    Row row;
    row.text("device", m.device).text("precision", m.precision).number("tflops", m.tflops).text("how", m.how);
    rates.push_back(row.done());
  }
  doc.value("matrix_rates", json::Value(std::move(rates)));
  doc.value("copy_bandwidth", json::Value(r.copy));
  doc.value("models", json::Value(r.models));
  doc.value("kernels", json::Value(r.kernels));
  doc.value("layers", json::Value(r.layers));
  doc.value("notes", json::Value(r.notes));
  return doc.done();
}

namespace {

void write_json(std::string& out, const json::Value& v, int depth) {
  using T = json::Value::Type;
  char buf[64];
  switch (v.type()) {
    case T::Null: out += "null"; break;
    case T::Bool: out += v.as_bool() ? "true" : "false"; break;
    case T::Int: std::snprintf(buf, sizeof buf, "%" PRId64, v.as_int()); out += buf; break;
    case T::Double:
      if (std::isfinite(v.as_number())) {
        std::snprintf(buf, sizeof buf, "%.7g", v.as_number());
        out += buf;
      } else {
        out += "null";
      }
      break;
    case T::String: out += json::escape_string(v.as_string()); break;
    case T::Array: {
      // Top-level arrays one element per line; deeper ones on one line.
      const bool lines = depth <= 1;
      out += "[";
      bool first = true;
      for (const json::Value& e : v.as_array()) {
        out += first ? "" : ",";
        if (lines) out += "\n" + std::string(2 * (depth + 1), ' ');
        write_json(out, e, depth + 1);
        first = false;
      }
      if (lines && !first) out += "\n" + std::string(2 * depth, ' ');
      out += "]";
      break;
    }
    case T::Object: {
      const bool lines = depth == 0;
      out += "{";
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        out += first ? "" : (lines ? "," : ", ");
        if (lines) out += "\n  ";
        out += json::escape_string(k) + ": ";
        write_json(out, e, depth + 1);
        first = false;
      }
      if (lines) out += "\n";
      out += "}";
      break;
    }
  }
}

// ---- reading rows back, tolerant of missing fields (a reference from another tool may lack some)
std::string text_of(const json::Value& row, const char* key) {
  const json::Value* v = row.is_object() ? row.find(key) : nullptr;
  if (!v) return "";
  if (v->is_string()) return v->as_string();
  if (v->is_int()) return std::to_string(v->as_int());
  return "";
}

double number_of(const json::Value& row, const char* key) {
  const json::Value* v = row.is_object() ? row.find(key) : nullptr;
  return v && v->is_number() ? v->as_number() : NAN;
}

const json::Array& array_of(const json::Value& doc, const char* key) {
  static const json::Array kEmpty;
  const json::Value* v = doc.is_object() ? doc.find(key) : nullptr;
  return v && v->is_array() ? v->as_array() : kEmpty;
}

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Three significant digits: TFLOP/s spans 0.01 (a loaded CPU) to hundreds (a GPU in bf16).
std::string significant(double v) {
  if (!std::isfinite(v)) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string mib(double bytes) { return std::isfinite(bytes) ? fixed(bytes / (1 << 20), 0) : "n/a"; }

std::string cell(std::string s) {
  for (char& c : s)
    if (c == '|' || c == '\n') c = ' ';
  if (s.size() > 90) s = s.substr(0, 87) + "...";
  return s;
}

std::string row_key(const json::Value& row) {
  return str(text_of(row, "device"), "/", text_of(row, "model"), "/", text_of(row, "batch"), "/",
             text_of(row, "image"), "/", text_of(row, "mode"));
}

std::string header_lines(const json::Value& ours, const json::Value* reference) {
  std::string out;
  out += "- command: `" + text_of(ours, "command") + "`\n";
  for (const json::Value& d : array_of(ours, "devices"))
    out += "- " + text_of(d, "device") + ": " + text_of(d, "name") + "\n";
  out += "- timing: " + text_of(ours, "timing") + "\n";
  out += "- FLOPs: " + text_of(ours, "flops_counted") + "; training: " + text_of(ours, "training_flops") + "\n";
  out += "- training step: " + text_of(ours, "optimizer") + "\n";
  for (const json::Value& n : array_of(ours, "notes"))
    if (n.is_string()) out += "- note: " + n.as_string() + "\n";
  if (reference) {
    out += "- reference: `" + text_of(*reference, "command") + "` (PyTorch " + text_of(*reference, "torch_version") +
           ", " + text_of(*reference, "device_name") + ")\n";
    const json::Value* tf32 = reference->is_object() ? reference->find("tf32") : nullptr;
    if (tf32 && tf32->is_object()) {
      out += "- reference TF32:";
      for (const auto& [k, v] : tf32->as_object()) out += " " + k + "=" + (v.is_bool() && v.as_bool() ? "on" : "off");
      out += "\n";
    }
    for (const json::Value& n : array_of(*reference, "notes"))
      if (n.is_string()) out += "- reference note: " + n.as_string() + "\n";
  }
  const json::Array& rates = array_of(ours, "matrix_rates");
  if (!rates.empty()) {
    out += "\nMeasured matrix rates (the roofline denominators):\n\n| device | precision | TFLOP/s | how |\n|---|---|---:|---|\n";
    for (const json::Value& r : rates)
      out += "| " + text_of(r, "device") + " | " + text_of(r, "precision") + " | " + fixed(number_of(r, "tflops"), 3) +
             " | " + cell(text_of(r, "how")) + " |\n";
  }
  for (const json::Value& c : array_of(ours, "copy_bandwidth"))
    out += "\nCopy bandwidth: " + fixed(number_of(c, "gbs"), 0) + " GB/s (" + text_of(c, "what") + ", " +
           mib(number_of(c, "bytes")) + " MiB, counting read + write).\n";
  return out;
}

std::string models_table(const json::Value& ours, const json::Value* reference, const std::string& device) {
  std::vector<const json::Value*> rows;
  for (const json::Value& r : array_of(ours, "models"))
    if (text_of(r, "device") == device) rows.push_back(&r);
  if (rows.empty()) return "";
  // Reference configurations on this device, in order of first appearance.
  std::vector<std::string> configs;
  if (reference)
    for (const json::Value& r : array_of(*reference, "models"))
      if (text_of(r, "device") == device &&
          std::find(configs.begin(), configs.end(), text_of(r, "config")) == configs.end())
        configs.push_back(text_of(r, "config"));
  auto find_ref = [&](const json::Value& row, const std::string& config) -> const json::Value* {
    for (const json::Value& r : array_of(*reference, "models"))
      if (text_of(r, "config") == config && row_key(r) == row_key(row)) return &r;
    return nullptr;
  };
  std::string out = "\n## Models on " + device + "\n\n";
  out += "| model | mode | batch | image | tl img/s | tl ms | tl peak MiB | GFLOP/img | TFLOP/s | % of matrix rate |";
  std::string rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|";
  for (const std::string& c : configs) {
    out += " " + c + " img/s | " + c + " peak MiB | **tl/" + c + "** |";
    rule += "---:|---:|---:|";
  }
  out += "\n" + rule + "\n";
  for (const json::Value* row : rows) {
    const double ips = number_of(*row, "images_per_s");
    const std::string error = text_of(*row, "error");
    out += "| " + text_of(*row, "model") + " | " + text_of(*row, "label") + " | " + text_of(*row, "batch") + " | " +
           text_of(*row, "image") + " | ";
    if (!error.empty()) {
      out += "error: " + cell(error) + " | | | | | |";
    } else {
      out += fixed(ips, 1) + " | " + fixed(number_of(*row, "ms"), 2) + " | " + mib(number_of(*row, "peak_bytes")) +
             " | " + fixed(number_of(*row, "flops_per_image") / 1e9, 2) + " | " + significant(number_of(*row, "tflops")) +
             " | " + fixed(100 * number_of(*row, "fraction_of_matrix_rate"), 1) + "% of " +
             text_of(*row, "matrix_rate") + " |";
    }
    for (const std::string& c : configs) {
      const json::Value* r = find_ref(*row, c);
      if (!r) {
        out += " not run | | |";
        continue;
      }
      const std::string ref_error = text_of(*r, "error");
      if (!ref_error.empty()) {
        out += " " + cell(ref_error) + " | | |";
        continue;
      }
      const double theirs = number_of(*r, "images_per_s");
      out += " " + fixed(theirs, 1) + " | " + mib(number_of(*r, "peak_bytes")) + " | **" +
             (error.empty() && theirs > 0 ? fixed(ips / theirs, 2) : std::string("–")) + "** |";
    }
    out += "\n";
  }
  return out;
}

std::string kernels_table(const json::Value& ours) {
  const json::Array& rows = array_of(ours, "kernels");
  if (rows.empty()) return "";
  std::string out = "\n## Kernels on cuda\n\nGB/s = the least bytes the op must move / median time; % of copy = that "
                    "over the device-to-device copy bandwidth above; cuDNN/tl = cuDNN's time over ours (above 1: ours "
                    "is faster).\n\n";
  out += "| kernel | tensors | MB moved | tl ms | tl GB/s | % of copy | cuDNN call | cuDNN ms | cuDNN GB/s | cuDNN/tl |\n";
  out += "|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n";
  for (const json::Value& r : rows) {
    out += "| " + cell(text_of(r, "name")) + " | " + cell(text_of(r, "shape")) + " | " +
           fixed(number_of(r, "bytes") / 1e6, 1) + " | ";
    const std::string error = text_of(r, "error");
    if (!error.empty())
      out += "error: " + cell(error) + " | | | ";
    else
      out += fixed(number_of(r, "ms"), 4) + " | " + fixed(number_of(r, "gbs"), 0) + " | " +
             fixed(100 * number_of(r, "fraction_of_copy"), 1) + "% | ";
    const std::string reference = text_of(r, "reference");
    const std::string ref_error = text_of(r, "reference_error");
    if (reference.empty()) {
      out += "– | | | |\n";
    } else if (!ref_error.empty()) {
      out += cell(reference) + " | error: " + cell(ref_error) + " | | |\n";
    } else {
      const double ratio = number_of(r, "reference_ms") / number_of(r, "ms");
      out += cell(reference) + " | " + fixed(number_of(r, "reference_ms"), 4) + " | " +
             fixed(number_of(r, "reference_gbs"), 0) + " | " + fixed(ratio, 2) + " |\n";
    }
  }
  return out;
}

std::string layers_table(const json::Value& ours) {
  const json::Array& rows = array_of(ours, "layers");
  if (rows.empty()) return "";
  double whole = NAN;
  for (const json::Value& r : rows)
    if (text_of(r, "part").rfind("whole step", 0) == 0) whole = number_of(r, "total_ms");
  const json::Value& first = rows.front();
  std::string out = "\n## Where the time of one training step goes (" + text_of(first, "model") + ", batch " +
                    text_of(first, "batch") + ", " + text_of(first, "image") + "x" + text_of(first, "image") + ", " +
                    text_of(first, "device") + ")\n\nEach top-level child timed on its own (forward and backward); "
                    "on the GPU these are device times between CUDA events, so host gaps between parts are only in "
                    "the whole step.\n\n";
  out += "| part | forward ms | backward ms | total ms | % of step | training GFLOP | TFLOP/s |\n";
  out += "|---|---:|---:|---:|---:|---:|---:|\n";
  for (const json::Value& r : rows) {
    const double total = number_of(r, "total_ms"), flops = number_of(r, "training_flops");
    const bool summary = text_of(r, "part").rfind("sum of", 0) == 0 || text_of(r, "part").rfind("whole", 0) == 0;
    out += "| " + cell(text_of(r, "part")) + " | " + fixed(number_of(r, "forward_ms"), 3) + " | " +
           fixed(number_of(r, "backward_ms"), 3) + " | " + fixed(total, 3) + " | " +
           (summary ? std::string("") : fixed(100 * total / whole, 1) + "%") + " | " +
           (flops > 0 ? significant(flops / 1e9) : std::string("")) + " | " +
           (flops > 0 && total > 0 ? significant(flops / total / 1e9) : std::string("")) + " |\n";
  }
  return out;
}

}  // namespace

std::string to_json_text(const json::Value& value) {
  std::string out;
  write_json(out, value, 0);
  return out + "\n";
}

std::string render_markdown(const json::Value& ours, const json::Value* reference) {
  std::string out = header_lines(ours, reference);
  out += models_table(ours, reference, "cuda");
  out += models_table(ours, reference, "cpu");
  out += kernels_table(ours);
  out += layers_table(ours);
  return out + "\n";
}

}  // namespace tl::app::bench
