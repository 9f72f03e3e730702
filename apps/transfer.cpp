// tl transfer MODE: transfer learning from a pretrained ResNet18 or VGG16 to an image dataset, the way people do it
// with torchvision and Keras, in one command:
//   extract     the frozen base runs once per image (features cached on disk), a new head trains on the features
//   finetune    new head + the top block (or a chosen selection) train on images, with augmentation
//   two-stage   stage 1 the head alone, stage 2 unfreeze from a layer and continue with a smaller learning rate
//   full        everything trains from the pretrained initialisation
// This file parses the command line; apps/transfer_modes.cpp runs the job.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/args.h"
#include "apps/commands.h"
#include "apps/device.h"
#include "apps/transfer_options.h"
#include "engine/context.h"
#include "engine/error.h"
#include "layers/models/heads.h"

namespace tl::app {

namespace {

std::string default_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/tl/features";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/tl/features";
}

TransferMode parse_mode(const std::string& name) {
  if (name == "extract") return TransferMode::Extract;
  if (name == "finetune") return TransferMode::Finetune;
  if (name == "two-stage") return TransferMode::TwoStage;
  if (name == "full") return TransferMode::Full;
  throw Error(str("transfer: unknown mode '", name, "' (expected extract, finetune, two-stage or full)"));
}

double optional_double(const Args& args, const std::string& name, double fallback) {
  return args.get(name).empty() ? fallback : args.get_double(name);
}

// --augment and the Keras ImageDataGenerator numbers -> what the training transform does.
void choose_augmentation(const Args& args, TransferOptions& o) {
  std::string style = args.get("augment");
  bool keras_numbers = false;
  for (const char* k : {"rotation", "width-shift", "height-shift", "shear", "zoom"}) keras_numbers |= !args.get(k).empty();
  bool asked = style != "auto" || keras_numbers || args.has("flip");
  if (style == "auto") style = o.mode == TransferMode::Extract ? "none" : keras_numbers ? "keras" : "torchvision";
  Augmentation& a = o.augmentation;
  if (style == "none") {
  } else if (style == "flip") {
    a.horizontal_flip = true;
  } else if (style == "torchvision") {
    a.random_resized_crop = true;
    a.horizontal_flip = true;
  } else if (style == "keras") {
    // Without numbers: the classic recipe (Chollet, Deep Learning with Python, 5.2).
    a.rotation_degrees = keras_numbers ? optional_double(args, "rotation", 0) : 40;
    a.width_shift = keras_numbers ? optional_double(args, "width-shift", 0) : 0.2;
    a.height_shift = keras_numbers ? optional_double(args, "height-shift", 0) : 0.2;
    a.shear_degrees = keras_numbers ? optional_double(args, "shear", 0) : 0.2;
    a.zoom = keras_numbers ? optional_double(args, "zoom", 0) : 0.2;
    a.horizontal_flip = !keras_numbers || args.has("flip");
  } else {
    throw Error(str("transfer: --augment must be auto, none, flip, torchvision or keras, got '", style, "'"));
  }
  if (args.has("flip")) a.horizontal_flip = true;
  TL_CHECK(a.rotation_degrees >= 0 && a.width_shift >= 0 && a.height_shift >= 0 && a.shear_degrees >= 0 &&
               a.zoom >= 0 && a.zoom < 1,
           "transfer: --rotation, --width-shift, --height-shift, --shear must be >= 0 and --zoom in [0, 1)");
  o.augment_style = style;
  if (o.mode == TransferMode::Extract && asked && a.any()) {
    o.augmentation_ignored = true;
    o.augmentation = Augmentation{};
    o.augment_style = "none";
  }
}

TransferOptions parse_options(const Args& args) {
  TransferOptions o;
  o.mode = parse_mode(args.rest()[0]);
  bool extract = o.mode == TransferMode::Extract;

  o.model.architecture = args.get("model");
  TL_CHECK(o.model.architecture.empty() || o.model.architecture == "resnet18" || o.model.architecture == "vgg16",
           "transfer: --model must be resnet18 or vgg16, got '", o.model.architecture, "'");
  o.model.weights = args.get("weights");
  o.model.head_spec = args.get("head");
  parse_head_spec(o.model.head_spec, 2);  // a bad spec fails here, before any data or weights are read
  o.model.binary = args.has("binary");
  o.model.image_size = args.get_int("image-size");
  const std::string& resize = args.get("resize");
  TL_CHECK(resize == "auto" || resize == "shorter" || resize == "exact",
           "transfer: --resize must be auto, shorter or exact, got '", resize, "'");
  o.model.resize = resize == "exact" ? ResizeMode::Exact : ResizeMode::ShorterThenCrop;
  o.resize_auto = resize == "auto";
  o.seed = static_cast<uint64_t>(args.get_int("seed"));
  o.model.seed = o.seed;

  o.data.dir = args.get("data");
  TL_CHECK(!o.data.dir.empty(), "transfer: --data DIR is required");
  o.data.format = args.get("data-format");
  o.data.split = parse_split(args.get("split"));
  o.data.seed = o.seed;
  o.data.limit = args.get_int("limit");

  OptimizerOptions& opt = o.optimizer;
  opt.name = args.get("optimizer").empty() ? (extract ? "adam" : "sgd") : args.get("optimizer");
  TL_CHECK(opt.name == "sgd" || opt.name == "adam" || opt.name == "adamw" || opt.name == "rmsprop",
           "transfer: --optimizer must be sgd, adam, adamw or rmsprop, got '", opt.name, "'");
  opt.lr = optional_double(args, "lr", opt.name == "sgd" ? 0.01 : 0.001);
  opt.momentum = args.get_double("momentum");
  opt.nesterov = args.has("nesterov");
  opt.weight_decay = args.get_double("weight-decay");
  opt.decay = args.get_double("decay");
  opt.schedule = args.get("schedule");
  TL_CHECK(opt.lr > 0, "transfer: --lr must be positive");
  TL_CHECK(opt.decay == 0 || opt.name == "sgd", "transfer: --decay (Keras time decay) works with --optimizer sgd");

  TL_CHECK(o.mode != TransferMode::TwoStage || args.get("epochs").empty(),
           "transfer: two-stage takes --stage1-epochs and --stage2-epochs, not --epochs");
  o.epochs = args.get("epochs").empty() ? (extract ? 100 : 10) : args.get_int("epochs");
  o.batch_size = args.get_int("batch-size");
  TL_CHECK(o.epochs > 0 && o.batch_size > 0, "transfer: --epochs and --batch-size must be positive");
  o.label_smoothing = args.get_double("label-smoothing");
  TL_CHECK(o.label_smoothing >= 0 && o.label_smoothing < 1, "transfer: --label-smoothing must be in [0, 1)");
  TL_CHECK(!o.model.binary || o.label_smoothing == 0, "transfer: --label-smoothing does not apply to --binary");

  o.train_globs = args.get("train");
  o.unfreeze_from = args.get("unfreeze-from");
  o.train_last = args.get_int("train-last");
  bool selection = !o.train_globs.empty() || !o.unfreeze_from.empty() || o.train_last != 0;
  TL_CHECK(!selection || o.mode == TransferMode::Finetune || (o.mode == TransferMode::TwoStage && o.train_globs.empty() &&
                                                             o.train_last == 0),
           "transfer: --train, --unfreeze-from and --train-last choose what finetune trains (two-stage takes "
           "--unfreeze-from only)");
  o.stage1_epochs = args.get_int("stage1-epochs");
  o.stage2_epochs = args.get_int("stage2-epochs");
  TL_CHECK(o.stage1_epochs >= 0 && o.stage2_epochs >= 0 && o.stage1_epochs + o.stage2_epochs > 0,
           "transfer: --stage1-epochs and --stage2-epochs must be >= 0, not both 0");
  o.stage2_lr = optional_double(args, "stage2-lr", opt.lr / 10);
  TL_CHECK(o.stage2_lr > 0, "transfer: --stage2-lr must be positive");

  choose_augmentation(args, o);
  o.threads = args.get_int("threads");
  o.workers = args.get_int("workers");
  TL_CHECK(o.workers >= 1, "transfer: --workers must be at least 1");
  o.device = device_from_option(args.get("device"));
  o.output = args.get("output").empty() ? str("runs/", args.rest()[0]) : args.get("output");
  o.cache_dir = args.get("cache-dir").empty() ? default_cache_dir() : args.get("cache-dir");
  o.export_path = args.get("export");
  if (!o.export_path.empty()) {
    const std::string& e = o.export_path;
    bool npy = e.size() > 4 && e.compare(e.size() - 4, 4, ".npy") == 0;
    bool csv = e.size() > 4 && e.compare(e.size() - 4, 4, ".csv") == 0;
    TL_CHECK(npy || csv, "transfer: --export FILE must end in .npy or .csv, got '", e, "'");
    TL_CHECK(extract, "transfer: --export writes the extracted features: it works with the extract mode");
  }
  o.strict = args.has("strict");
  return o;
}

}  // namespace

const char* mode_name(TransferMode mode) {
  switch (mode) {
    case TransferMode::Extract: return "extract";
    case TransferMode::Finetune: return "finetune";
    case TransferMode::TwoStage: return "two-stage";
    default: return "full";
  }
}

int run_transfer(int argc, char** argv) {
  Args args("transfer",
            "Transfer learning from a pretrained ResNet18 or VGG16 to the images in --data.\n"
            "MODE:\n"
            "  extract    frozen base, features computed once per image and cached; a new head trains on them\n"
            "  finetune   new head + the top block (layer4 / features.24, or --train/--unfreeze-from/--train-last)\n"
            "             train on images, with augmentation (frozen BatchNorm uses its running statistics)\n"
            "  two-stage  stage 1: the head alone; stage 2: unfreeze from --unfreeze-from, continue at --stage2-lr\n"
            "  full       everything trains from the pretrained initialisation\n"
            "Writes OUTPUT/model.safetensors (the best epoch by val accuracy), history.csv, history.png and\n"
            "confusion_val/test.{csv,png}. Ctrl-C stops after the current batch and saves what exists (exit 130).");
  args.positional("MODE", "extract | finetune | two-stage | full")
      .option("data", "", "image folder (class folders, or train/ val/ [test/] of class folders), CIFAR-10 binary "
                          "folder or IDX folder")
      .option("data-format", "auto", "auto | folder | idx | cifar10")
      .option("split", "80,10,10", "train,val,test percentages for a folder without train/ val/ (val also carved "
                                   "from train for sources without one)")
      .option("limit", "0", "use at most N examples per split (0: all)")
      .option("model", "", "resnet18 | vgg16 (default: the weights' architecture, else resnet18)")
      .option("weights", "", "pretrained weights: .pth (zip/legacy/tar), Keras .h5, safetensors; none: random init")
      .option("image-size", "224", "input side in pixels")
      .option("resize", "auto", "shorter: resize the shorter side to size*256/224 and center-crop (torchvision); "
                                "exact: resize to size x size (Keras target_size); auto: shorter for image folders, "
                                "exact for CIFAR-10 and IDX (whole small images)")
      .option("head", "", "new head: hidden widths and options, e.g. '256,dropout=0.5' or 'append' (empty: one Linear)")
      .flag("binary", "one sigmoid output with binary cross-entropy (two classes only)")
      .option("epochs", "", "epochs (default: extract 100, finetune/full 10; two-stage: see --stage1-epochs)")
      .option("batch-size", "32", "images (or feature rows) per step")
      .option("optimizer", "", "sgd | adam | adamw | rmsprop (default: extract adam, else sgd)")
      .option("lr", "", "learning rate (default: sgd 0.01, others 0.001)")
      .option("momentum", "0.9", "SGD momentum")
      .flag("nesterov", "Nesterov momentum (SGD)")
      .option("weight-decay", "0", "L2 weight decay (AdamW: decoupled)")
      .option("decay", "0", "Keras time decay: lr / (1 + decay * iterations) (SGD)")
      .option("schedule", "none", "none | step:SIZE:GAMMA (StepLR) | cosine (CosineAnnealingLR); per stage")
      .option("label-smoothing", "0", "softmax cross-entropy label smoothing")
      .option("train", "", "finetune: comma-separated globs of parameters that train, e.g. 'layer4.*,fc.*' "
                           "(the new head always trains)")
      .option("unfreeze-from", "", "finetune / two-stage stage 2: this layer and all after it train (layer4, "
                                   "features.24, Keras names like block5_conv1; default: the top block)")
      .option("train-last", "0", "finetune: the last N layers that have parameters train")
      .option("stage1-epochs", "5", "two-stage: epochs of the head alone")
      .option("stage2-epochs", "5", "two-stage: epochs after unfreezing")
      .option("stage2-lr", "", "two-stage: learning rate of stage 2 (default: lr/10)")
      .option("augment", "auto", "auto | none | flip | torchvision (RandomResizedCrop + flip) | keras (affine); "
                                 "auto: none for extract (ignored there), keras when a Keras number is given, "
                                 "else torchvision")
      .option("rotation", "", "Keras rotation_range in degrees (default recipe: 40)")
      .option("width-shift", "", "Keras width_shift_range, a fraction of the width (default recipe: 0.2)")
      .option("height-shift", "", "Keras height_shift_range, a fraction of the height (default recipe: 0.2)")
      .option("shear", "", "Keras shear_range in degrees (default recipe: 0.2)")
      .option("zoom", "", "Keras zoom_range z: scale in [1-z, 1+z] (default recipe: 0.2)")
      .flag("flip", "random horizontal flip")
      .option("seed", "1", "seed of initialisation, splits, shuffling and augmentation")
      .option("threads", "0", "CPU threads for compute (0: all cores)")
      .option("workers", "2", "image decoding threads")
      .option("device", "auto", "auto (the GPU when there is one) | cpu | cuda")
      .option("output", "", "output folder (default: runs/MODE)")
      .option("cache-dir", "", "feature cache (default: $XDG_CACHE_HOME/tl/features or ~/.cache/tl/features)")
      .option("export", "", "extract: write the train split's features to FILE (.npy or .csv)")
      .flag("strict", "an unreadable image is fatal (default: reported and skipped)");
  TransferOptions options;
  try {
    if (!args.parse(argc, argv)) return 0;
    options = parse_options(args);
  } catch (const Error& e) {
    std::string message = e.what();
    std::fprintf(stderr, "tl %s%s\n", message.rfind("transfer: ", 0) == 0 ? "" : "transfer: ", message.c_str());
    return 2;
  }
  return run_transfer_job(options);
}

}  // namespace tl::app
