#!/usr/bin/python3
"""PyTorch reference for tl's transfer learning: ResNet18 backbone -> ants/bees, on the CPU.

Run with Debian's python3-torch (1.13) and python3-torchvision (0.14):
  /usr/bin/python3 scripts/pytorch_transfer.py --mode extract
  /usr/bin/python3 scripts/pytorch_transfer.py --mode finetune --epochs 1
The recipes are the ones of /work/shared/data/README.md section 3a, whose numbers tl must reproduce:
  extract   frozen backbone in eval mode; features at --image-size (Resize round(size*256/224), CenterCrop size,
            ImageNet mean/std) computed once and kept in memory for train and val; new Linear(512,2) head;
            Adam lr 1e-3, weight decay 1e-4, batch 32, 200 epochs on the cached features, reshuffled each epoch.
  finetune  layer4.* and a new fc trainable (requires_grad False elsewhere); model.eval() then model.layer4.train(),
            so the BatchNorms of the frozen part keep their running statistics; train transform
            RandomResizedCrop(size) + RandomHorizontalFlip, val transform as in extract; SGD lr 0.008 momentum 0.9,
            batch 32, 8 epochs.
  full      every parameter trains from the backbone (model.train()), same transforms as finetune;
            SGD lr 0.001 momentum 0.9 (the torchvision tutorial's fine-tuning rate, without its StepLR), batch 32,
            8 epochs.
Images are read by torchvision's ImageFolder (sorted classes ants=0, bees=1; the .gif is skipped: 244 train / 153
val) and decoded on the main thread (DataLoader num_workers=0), so a run is deterministic for a given --seed and
--threads. The last partial batch is kept. The final line is machine-readable:
  RESULT mode=<m> best_val=<float> final_val=<float> seconds=<float> images_per_second=<float>
seconds: wall time of the whole run from the start of main() (after Python and torch are imported);
images_per_second: extract: (train+val images) / time to decode, transform and run the frozen backbone on them;
finetune/full: training images seen / time spent in the training passes (decoding and augmentation included,
validation excluded).
"""
import argparse
import time

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, models, transforms

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
DEFAULTS = {  # mode -> (epochs, learning rate)
    "extract": (200, 1e-3),
    "finetune": (8, 0.008),
    "full": (8, 0.001),
}


def eval_transform(size):
    return transforms.Compose([
        transforms.Resize(round(size * 256 / 224)),  # shorter side, bilinear (torchvision's default)
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD)])


def train_transform(size):
    return transforms.Compose([
        transforms.RandomResizedCrop(size),  # scale (0.08, 1), ratio (3/4, 4/3)
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD)])


def load_backbone(weights_path):
    """torchvision resnet18(num_classes=100) with the saved state_dict, fc replaced by a fresh Linear(512, 2)."""
    model = models.resnet18(num_classes=100)
    state = torch.load(weights_path, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.fc = nn.Linear(model.fc.in_features, 2)
    return model, len(state)


def loader(folder, batch_size, shuffle):
    return DataLoader(folder, batch_size=batch_size, shuffle=shuffle, num_workers=0)


def compute_features(backbone, data_loader):
    feats, labels = [], []
    with torch.no_grad():
        for x, y in data_loader:
            feats.append(backbone(x))
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def run_extract(args, model, train_set, val_set):
    model.fc = nn.Identity()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    x_train, y_train = compute_features(model, loader(train_set, args.batch_size, False))
    x_val, y_val = compute_features(model, loader(val_set, args.batch_size, False))
    extract_seconds = time.perf_counter() - start
    n_images = x_train.shape[0] + x_val.shape[0]
    print(f"features: train {tuple(x_train.shape)}, val {tuple(x_val.shape)} in {extract_seconds:.1f} s "
          f"({n_images / extract_seconds:.2f} images/s)", flush=True)

    head = nn.Linear(x_train.shape[1], 2)
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(args.seed)
    n = x_train.shape[0]
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        loss_sum, correct = 0.0, 0
        for begin in range(0, n, args.batch_size):
            idx = order[begin:begin + args.batch_size]
            logits = head(x_train[idx])
            loss = loss_fn(logits, y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * idx.shape[0]
            correct += (logits.argmax(1) == y_train[idx]).sum().item()
        with torch.no_grad():
            val_logits = head(x_val)
            val_loss = loss_fn(val_logits, y_val).item()
            val_acc = (val_logits.argmax(1) == y_val).float().mean().item()
        history.append(val_acc)
        print(f"epoch {epoch}/{args.epochs}: train loss {loss_sum / n:.4f} acc {correct / n:.4f}  "
              f"val loss {val_loss:.4f} acc {val_acc:.4f}  ({time.perf_counter() - t0:.3f} s)", flush=True)
    return history, n_images / extract_seconds


def set_train_mode(args, model):
    """finetune: only layer4 in training mode (the frozen part's BNs keep their running statistics); full: all."""
    if args.mode == "full":
        model.train()
    else:
        model.eval()
        model.layer4.train()


def run_train(args, model, train_set, val_set):
    if args.mode == "finetune":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("layer4.") or name.startswith("fc."))
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    print(f"trainable parameters: {n_trainable:,} in {len(params)} tensors", flush=True)
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    train_loader = loader(train_set, args.batch_size, True)
    val_loader = loader(val_set, args.batch_size, False)
    history = []
    train_seconds, train_images = 0.0, 0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        set_train_mode(args, model)
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in train_loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * x.shape[0]
            correct += (logits.argmax(1) == y).sum().item()
            n += x.shape[0]
        t1 = time.perf_counter()
        train_seconds += t1 - t0
        train_images += n
        model.eval()
        val_loss_sum, val_correct, n_val = 0.0, 0, 0
        with torch.no_grad():
            for x, y in val_loader:
                logits = model(x)
                val_loss_sum += loss_fn(logits, y).item() * x.shape[0]
                val_correct += (logits.argmax(1) == y).sum().item()
                n_val += x.shape[0]
        val_acc = val_correct / n_val
        history.append(val_acc)
        t2 = time.perf_counter()
        print(f"epoch {epoch}/{args.epochs}: train loss {loss_sum / n:.4f} acc {correct / n:.4f}  "
              f"val loss {val_loss_sum / n_val:.4f} acc {val_acc:.4f}  "
              f"({t2 - t0:.1f} s: train {t1 - t0:.1f}, val {t2 - t1:.1f}; {n / (t1 - t0):.2f} train images/s)",
              flush=True)
    return history, train_images / train_seconds


def main():
    run_start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--mode", choices=sorted(DEFAULTS), default="extract")
    parser.add_argument("--epochs", type=int, default=None, help="default: 200 extract, 8 finetune/full")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 extract, 0.008 finetune, 0.001 full")
    parser.add_argument("--image-size", type=int, default=224, help="crop size; resize = round(size*256/224)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--data", default="/work/shared/data/hymenoptera", help="folder with train/ and val/")
    parser.add_argument("--weights", default="/work/shared/data/weights/resnet18-miniimagenet.pth")
    parser.add_argument("--augment", choices=["torchvision", "none"], default="torchvision",
                        help="finetune/full training transform: RandomResizedCrop + flip, or the eval transform")
    args = parser.parse_args()
    default_epochs, default_lr = DEFAULTS[args.mode]
    args.epochs = default_epochs if args.epochs is None else args.epochs
    args.lr = default_lr if args.lr is None else args.lr

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, n_keys = load_backbone(args.weights)
    size = args.image_size
    val_tf = eval_transform(size)
    train_tf = val_tf if args.mode == "extract" or args.augment == "none" else train_transform(size)
    train_set = datasets.ImageFolder(f"{args.data}/train", transform=train_tf)
    val_set = datasets.ImageFolder(f"{args.data}/val", transform=val_tf)
    if train_set.classes != val_set.classes:
        raise SystemExit(f"train classes {train_set.classes} differ from val classes {val_set.classes}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {args.threads} threads; mode {args.mode}, epochs {args.epochs}, "
          f"lr {args.lr}, batch {args.batch_size}, augment {args.augment}, size {size} (resize {round(size * 256 / 224)}), seed {args.seed}; "
          f"weights {args.weights} ({n_keys} entries); classes {train_set.classes}, "
          f"train {len(train_set)}, val {len(val_set)}", flush=True)

    if args.mode == "extract":
        history, images_per_second = run_extract(args, model, train_set, val_set)
    else:
        history, images_per_second = run_train(args, model, train_set, val_set)
    best, final = max(history), history[-1]
    seconds = time.perf_counter() - run_start
    print(f"best val accuracy {best:.4f} (epoch {history.index(best) + 1}), final {final:.4f}; {seconds:.1f} s")
    print(f"RESULT mode={args.mode} best_val={best:.4f} final_val={final:.4f} seconds={seconds:.2f} "
          f"images_per_second={images_per_second:.2f}")


if __name__ == "__main__":
    main()
