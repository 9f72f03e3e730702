#!/usr/bin/python3
"""PyTorch reference for `tl train-mnist`: the same network and recipe on Fashion-MNIST, on the CPU.

Run with Debian's python3-torch: /usr/bin/python3 scripts/pytorch_fashion_mnist.py --epochs 3
Reads the IDX files itself (gzip + numpy; no torchvision datasets), so the inputs are byte-for-byte
what tl's loader sees. Network: Conv(1->16,3,p1) BN ReLU MaxPool2 Conv(16->32,3,p1) BN ReLU MaxPool2
Flatten Linear(32*7*7 -> 10); pixels scaled to [0,1] then normalised with mean 0.2860 std 0.3530;
SGD lr 0.05 momentum 0.9, batch 64, reshuffled every epoch from a seeded generator; the last partial
batch is kept. The final line is machine-readable: RESULT accuracy=<float> seconds=<float>.
"""
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    """Returns the uint8 array of an IDX file (raw or gzipped), checking the header against the data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndims = raw[3]
    header = 4 + 4 * ndims
    dims = struct.unpack(">" + "I" * ndims, raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        sys.exit(f"{path}: header says {int(np.prod(dims))} bytes of data, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find(data_dir, name):
    for candidate in (os.path.join(data_dir, name), os.path.join(data_dir, name + ".gz")):
        if os.path.exists(candidate):
            return candidate
    sys.exit(f"found neither {os.path.join(data_dir, name)} nor its .gz")


def load_split(data_dir, split, limit):
    images = read_idx(find(data_dir, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{split}-labels-idx1-ubyte"))
    if images.shape[0] != labels.shape[0]:
        sys.exit(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    # Same float32 arithmetic as tl: x / 255, then (x - mean) / std.
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    x = (x - MEAN) / STD
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def evaluate(model, x, y, batch_size=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start:start + batch_size])
            correct += (logits.argmax(1) == y[start:start + batch_size]).sum().item()
    return correct / max(1, x.shape[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=0, help="keep the first N training images (0: all)")
    parser.add_argument("--test-limit", type=int, default=0, help="keep the first N test images (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = load_split(args.data_dir, "train", args.train_limit)
    x_test, y_test = load_split(args.data_dir, "t10k", args.test_limit)
    print(f"torch {torch.__version__}, {args.threads} threads; train {tuple(x_train.shape)}, "
          f"test {tuple(x_test.shape)}")

    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(args.seed)
    n = x_train.shape[0]
    train_seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        loss_sum, correct = 0.0, 0
        start = time.perf_counter()
        for begin in range(0, n, args.batch_size):
            idx = order[begin:begin + args.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * idx.shape[0]
            correct += (logits.argmax(1) == yb).sum().item()
        seconds = time.perf_counter() - start
        train_seconds += seconds
        print(f"epoch {epoch}/{args.epochs}: loss {loss_sum / n:.4f}  train accuracy {correct / n:.4f}  "
              f"{n / seconds:.1f} images/s  ({seconds:.1f} s)", flush=True)

    accuracy = evaluate(model, x_test, y_test)
    print(f"test accuracy {accuracy:.4f} on {x_test.shape[0]} images")
    print(f"training time {train_seconds:.2f} s")
    print(f"RESULT accuracy={accuracy:.4f} seconds={train_seconds:.2f}")


if __name__ == "__main__":
    main()
