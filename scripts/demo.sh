#!/usr/bin/env bash
# The main job, after scripts/setup.sh: builds tl, then transfer learning on the ants/bees images of
# ../shared/data/hymenoptera (244 train, 153 val) from the pretrained ResNet18 backbone
# (../shared/data/weights/resnet18-miniimagenet.pth), in the two ways people do it:
#   1. tl transfer extract   the frozen backbone runs once per image (features cached), a new fc trains on them
#   2. tl transfer finetune  layer4 + a new fc train on the images, with RandomResizedCrop + flip
# Each step prints its validation accuracy, its time, and where it wrote the model and the plots (runs/demo-*).
# Measured on a quiet 2-core CPU after the build: 196 s (extract 20 s, finetune 8 epochs 176 s; 341 s of user CPU),
# val accuracy 85.0% and 79.7%. TL_DEMO_IMAGE_SIZE (224) and TL_DEMO_EPOCHS (8, finetune) change the sizes:
# finetune at 112 px costs about 17 s of CPU per epoch against 43 s at 224 (decoding the JPEGs is the same).
# Without ../shared/data it says so and trains the small Fashion-MNIST CNN instead (tl train-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
tl=./"${TL_BUILD_DIR:-build}"/tl

data=../shared/data/hymenoptera
weights=../shared/data/weights/resnet18-miniimagenet.pth
if [ ! -d "$data/train" ] || [ ! -f "$weights" ]; then
  echo
  echo "demo: ../shared/data not found (it holds the ants/bees images and the pretrained ResNet18 the transfer"
  echo "demo: learning demo needs: $data, $weights)."
  echo "demo: running the Fashion-MNIST demo instead: a small CNN trained from scratch (tl train-mnist)."
  echo
  exec "$tl" train-mnist --device auto --epochs 3
fi

if "$tl" info | grep -q "^CUDA devices: [1-9]"; then
  echo "demo: a CUDA device is present, but tl transfer runs ResNet18 on the CPU until the CUDA backend has"
  echo "demo: convolution and BatchNorm (--device auto chooses the CPU for now)"
fi

size=${TL_DEMO_IMAGE_SIZE:-224}
epochs=${TL_DEMO_EPOCHS:-8}
mkdir -p runs
start=$SECONDS

# Runs one tl transfer step, its output also kept in runs/NAME.log; prints its RESULT line's numbers afterwards.
step() {
  local name=$1 what=$2
  shift 2
  echo
  echo "demo: ---- $what"
  echo "demo: $tl $*"
  local t0=$SECONDS
  "$tl" "$@" | tee "runs/$name.log"
  local seconds=$((SECONDS - t0))
  local result
  result=$(grep '^RESULT ' "runs/$name.log" | tail -n 1)
  [ -n "$result" ] || { echo "demo: $name printed no RESULT line" >&2; exit 1; }
  local accuracy correct count
  accuracy=$(sed -n 's/.*val_accuracy=\([0-9.]*\).*/\1/p' <<<"$result")
  correct=$(sed -n 's/.*val_correct=\([0-9]*\).*/\1/p' <<<"$result")
  count=$(sed -n 's/.*val_count=\([0-9]*\).*/\1/p' <<<"$result")
  summary+=("$(printf '%-9s %5.1f%% (%s/%s)  %4d s   runs/%s/: model.safetensors, history.png, confusion_val.png' \
    "${name#demo-}" "$(awk -v a="$accuracy" 'BEGIN { print a * 100 }')" "$correct" "$count" "$seconds" "$name")")
}

summary=()
step demo-extract "1/2 extract: frozen ResNet18 features (computed once, cached in runs/feature-cache), new fc, Adam 1e-3, 100 epochs" \
  transfer extract --data "$data" --weights "$weights" --image-size "$size" --optimizer adam --lr 0.001 --epochs 100 \
  --device auto \
  --cache-dir runs/feature-cache --output runs/demo-extract
step demo-finetune "2/2 finetune: layer4 + new fc on augmented images, SGD 0.008 momentum 0.9, $epochs epochs" \
  transfer finetune --data "$data" --weights "$weights" --image-size "$size" --epochs "$epochs" --device auto \
  --train 'layer4.*,fc.*' --optimizer sgd --lr 0.008 --momentum 0.9 --output runs/demo-finetune

echo
echo "demo: ants vs bees from the mini-ImageNet ResNet18 at $size px; val accuracy of the best epoch (153 images), time:"
for line in "${summary[@]}"; do echo "  $line"; done
echo "demo: PyTorch from the same backbone at 224 px: extract 84.3% (200 epochs, weight decay 1e-4), finetune 79.7%"
echo "demo: (the same recipe; docs/transfer-reference.md)"
echo "demo: total $((SECONDS - start)) s after the build. Classify new images with:"
echo "  $tl predict runs/demo-finetune/model.safetensors IMAGE_OR_FOLDER..."
echo "demo: more workflows (Keras and torchvision recipes as one command each): docs/recipes.md"
