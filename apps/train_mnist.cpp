// tl train-mnist: the first real job. A small CNN (conv-BN-ReLU-pool x2, linear) trained on Fashion-MNIST read
// from the Debian package's gzipped IDX files. scripts/pytorch_fashion_mnist.py is the same recipe in PyTorch.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <vector>

#include "apps/args.h"
#include "apps/commands.h"
#include "apps/device.h"
#include "apps/progress.h"
#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "kernels/accuracy.h"
#include "layers/batchnorm2d.h"
#include "layers/conv2d.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"
#include "layers/relu.h"
#include "loaders/idx.h"

namespace tl::app {

namespace {

// Fashion-MNIST's training-set pixel mean and standard deviation (in [0,1] units).
constexpr double kMean = 0.2860, kStd = 0.3530;

void build_network(Model& model) {
  Sequential& s = model.root();
  s.emplace<Conv2d>("conv1", 1, 16, 3, 1, 1);
  s.emplace<BatchNorm2d>("bn1", 16);
  s.emplace<ReLU>("relu1");
  s.emplace<MaxPool2d>("pool1", 2);
  s.emplace<Conv2d>("conv2", 16, 32, 3, 1, 1);
  s.emplace<BatchNorm2d>("bn2", 32);
  s.emplace<ReLU>("relu2");
  s.emplace<MaxPool2d>("pool2", 2);
  s.emplace<Flatten>("flatten");
  s.emplace<Linear>("fc", 32 * 7 * 7, 10);
  model.architecture = "fashion-mnist-cnn";
  model.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
}

// Copies the rows `order[begin, end)` of images/labels into a batch.
void gather(const IdxDataset& data, const std::vector<int64_t>& order, int64_t begin, int64_t end, Tensor& images,
            Tensor& labels) {
  int64_t row = data.images.numel() / data.images.size(0);
  images = Tensor::empty({end - begin, 1, data.images.size(2), data.images.size(3)});
  labels = Tensor::empty({end - begin}, DType::I64);
  for (int64_t i = begin; i < end; ++i) {
    const float* src = data.images.data<float>() + order[i] * row;
    std::copy(src, src + row, images.data<float>() + (i - begin) * row);
    labels.data<int64_t>()[i - begin] = data.labels.data<int64_t>()[order[i]];
  }
}

double evaluate(Context& ctx, Model& model, const IdxDataset& data, int64_t batch_size) {
  std::vector<int64_t> order(static_cast<size_t>(data.labels.numel()));
  std::iota(order.begin(), order.end(), 0);
  int64_t correct = 0;
  for (int64_t b = 0; b < data.labels.numel(); b += batch_size) {
    Tensor images, labels;
    gather(data, order, b, std::min<int64_t>(b + batch_size, data.labels.numel()), images, labels);
    Tensor logits = model.forward(ctx, to_job_device(ctx, images), Mode::Eval);
    correct += count_correct(ctx, logits, to_job_device(ctx, labels));
  }
  return data.labels.numel() ? double(correct) / data.labels.numel() : 0;
}

}  // namespace

int run_train_mnist(int argc, char** argv) {
  Args args("train-mnist", "Train a small CNN (conv-BN-ReLU-pool x2, linear) on Fashion-MNIST and report test accuracy.");
  args.option("data", "/usr/share/datasets/fashion-mnist", "folder with the (gzipped) IDX files")
      .option("epochs", "3", "passes over the training set")
      .option("batch-size", "64", "images per step")
      .option("lr", "0.05", "SGD learning rate (momentum 0.9)")
      .option("train-limit", "0", "use only the first N training images (0: all 60000)")
      .option("test-limit", "0", "use only the first N test images (0: all 10000)")
      .option("seed", "1", "seed for initialisation and shuffling")
      .option("threads", "0", "CPU threads (0: all cores)")
      .option("device", "auto", "auto (the GPU when there is one) | cpu | cuda")
      .option("save", "", "write the trained model here (safetensors)");
  if (!args.parse(argc, argv)) return 0;

  Device device = device_from_option(args.get("device"));
  Context ctx(job_context_options(device, static_cast<uint64_t>(args.get_int("seed")), args.get_int("threads")));
  IdxDataset train = load_idx_dataset(args.get("data"), "train", args.get_int("train-limit"), kMean, kStd);
  IdxDataset test = load_idx_dataset(args.get("data"), "t10k", args.get_int("test-limit"), kMean, kStd);
  std::printf("Fashion-MNIST: %lld train, %lld test images; device %s\n", static_cast<long long>(train.labels.numel()),
              static_cast<long long>(test.labels.numel()), device_summary(ctx).c_str());

  Model model;
  build_network(model);
  model.reset_parameters(ctx.rng());  // on the host, from the seed: the same initial weights on every device
  move_model(ctx, model);
  auto optimizer = make_sgd({.momentum = 0.9});
  optimizer->add_group(model.named_parameters(), args.get_double("lr"));

  int64_t n = train.labels.numel(), batch = args.get_int("batch-size"), epochs = args.get_int("epochs");
  TL_CHECK(batch > 0 && epochs > 0, "--batch-size and --epochs must be positive");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  double train_seconds = 0;
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[ctx.rng().below(i)]);
    ProgressBar bar(str("epoch ", epoch, "/", epochs), (n + batch - 1) / batch);
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t b = 0; b < n; b += batch) {
      Tensor images, labels;
      gather(train, order, b, std::min(b + batch, n), images, labels);
      optimizer->zero_grad(ctx);
      Tensor logits = model.forward(ctx, to_job_device(ctx, images), Mode::Train);
      Tensor device_labels = to_job_device(ctx, labels);
      LossResult loss = cross_entropy_loss(ctx, logits, device_labels);
      model.backward(ctx, loss.dlogits);
      optimizer->step(ctx);
      loss_sum += loss.loss * labels.numel();
      correct += count_correct(ctx, logits, device_labels);
      bar.step(labels.numel());
    }
    double rate = bar.finish();
    train_seconds += bar.seconds();
    std::printf("epoch %lld/%lld  loss %.4f  train accuracy %.2f%%  %.0f img/s\n", static_cast<long long>(epoch),
                static_cast<long long>(epochs), loss_sum / n, 100.0 * correct / n, rate);
    std::fflush(stdout);
  }
  double accuracy = evaluate(ctx, model, test, 256);
  std::printf("test accuracy %.2f%% on %lld images; training took %.1f s\n", 100 * accuracy,
              static_cast<long long>(test.labels.numel()), train_seconds);
  if (!args.get("save").empty()) {
    save_checkpoint(ctx, args.get("save"), model);
    std::printf("saved %s\n", args.get("save").c_str());
  }
  std::printf("RESULT accuracy=%.4f seconds=%.1f\n", accuracy, train_seconds);
  return 0;
}

}  // namespace tl::app
