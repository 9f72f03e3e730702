#!/usr/bin/python3
"""Golden values for tests/test_golden.cpp: torchvision ResNet18 and VGG16 against our CPU path.

Run with Debian's Python (torch 1.13 CPU, torchvision 0.14, PIL), from anywhere:
    /usr/bin/python3 tests/golden/make_golden.py

Writes, next to this script (safetensors written by hand: 8-byte little-endian header length, JSON, raw data):
  golden_inputs.safetensors      "images" F32 [2,3,224,224]: one ant and one bee from hymenoptera/val, through
                                 torchvision's exact eval transforms (Resize 256, CenterCrop 224, ToTensor,
                                 Normalize ImageNet mean/std), so the C++ test does not depend on our image code.
  resnet18_golden.safetensors    resnet18(num_classes=10) with every parameter and buffer set by the formula below
  vgg16_golden.safetensors       vgg16(num_classes=10), same formula
  resnet18_full_training_golden.safetensors  two SGD steps of the WHOLE network (see "Full training" below)
  resnet18_miniimagenet_golden.safetensors   only when ../shared/data/weights/resnet18-miniimagenet.pth exists:
                                 that trained checkpoint's logits (100-way) and pooled features

Each model file holds:
  logits F32 [2,10]              eval mode, float32
  features F32 [2,F]             resnet18: the 512-d flattened avgpool output; vgg16: the 4096-d output of
                                 classifier.4 (the ReLU after the second 4096-wide Linear)
  loss F64 [1]                   cross entropy (mean) of one training step in float64 with labels [0, 1]
  grad.<name> F64 [n]            that step's gradient of parameter <name>, flattened, every s-th element from 0
  grad_norm.<name> F64 [1]       the full gradient's L2 norm
  weight_checksum F64 [T,2]      per state_dict entry as filled (before the training step moves running
                                 statistics): sum |v| and sum v * ((i*2654435761 mod 1000)/1000), so a formula
                                 mismatch is reported per tensor rather than as a wrong logit
metadata: "state_dict" (JSON list of names in order), "grad_stride.<name>" (s), "images", versions.

The training step: every parameter frozen except layer4.* and fc.* (resnet18) / features.28.* and classifier.6.*
(vgg16). ResNet18 runs with model.eval() and model.layer4.train(): frozen BatchNorms use running statistics, the
trainable ones in layer4 batch statistics (the engine's frozen-BN rule). VGG16 runs entirely in eval mode: it has no
BatchNorm, so eval only disables the two dropouts (the C++ side replaces classifier.2 and .5 by Dropout(0)).

Full training (the `tl transfer full` recipe's mechanics): resnet18(num_classes=10), formula weights, float64,
every parameter trainable, model.train() everywhere (every BatchNorm on batch statistics and updating its running
statistics), torch.optim.SGD(lr=0.01, momentum=0.9), two steps on the same two images and labels. The file holds
loss.1, loss.2, grad.<name> / grad_norm.<name> of step 1 (sampled as above, at most 512 samples per tensor),
param.<name> / param_norm.<name> after step 2 (sampled likewise), and every BatchNorm's running_mean and
running_var after step 2 in full (F64). Metadata: grad_stride.<name>, param_stride.<name>, lr, momentum.

Why the training step runs in float64: a gradient is discontinuous where a ReLU input crosses zero, and a float32
forward puts a few of the ~10^5 ReLU inputs of layer4 on the other side of zero (PyTorch's own float32 step
differs from its float64 step by up to 4.6e-3 in layer4's gradients, one flipped sign at layer4.1's output
alone). Compared in float32, any two correct implementations would disagree by that much; in float64 the
chance of a flip is ~1e-10 and the comparison is sharp. The forward (logits, features) is continuous and is
compared in float32.

The weight formula (tests/support/golden_weights.cpp computes the same): the k-th state_dict entry (k from 0,
buffers included), element i of its flattened tensor, u = (splitmix64(seed=1000+k, index=i) >> 40) / 2^24, the
engine's tl::hash_u64 (engine/rng.h), uniform in [0,1) with 24 bits. Values are computed in float64 and rounded
once to float32:
  conv/linear weight (dim >= 2):  sqrt(6 / fan_in) * (2u - 1)      He-uniform: keeps ReLU activations O(1)
  BatchNorm weight (dim 1):       0.5 + 0.5 u
  bias (any):                     0.1 * (2u - 1)
  running_mean:                   0.1 * (2u - 1)
  running_var:                    0.75 + 0.5 u
  num_batches_tracked:            0
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
NUM_CLASSES = 10
LABELS = [0, 1]  # ant, bee
MAX_GRAD_SAMPLES = 4096
MASK64 = (1 << 64) - 1


# ---- the deterministic weight formula -------------------------------------------------------------------------

def hash_u64(seed, index):
    """tl::hash_u64 (splitmix64 finaliser) over a uint64 index array; numpy uint64 arithmetic wraps mod 2^64."""
    z = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & MASK64) + index
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def golden_tensor(name, shape, k):
    numel = int(np.prod(shape)) if len(shape) else 1
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    out = np.empty(numel, dtype=np.float32)
    chunk = 1 << 22
    for begin in range(0, numel, chunk):
        end = min(numel, begin + chunk)
        h = hash_u64(1000 + k, np.arange(begin, end, dtype=np.uint64))
        u = (h >> np.uint64(40)).astype(np.float64) * (1.0 / 16777216.0)
        if name.endswith("running_mean") or name.endswith("bias"):
            v = 0.1 * (2.0 * u - 1.0)
        elif name.endswith("running_var"):
            v = 0.75 + 0.5 * u
        elif name.endswith("weight") and len(shape) == 1:
            v = 0.5 + 0.5 * u
        elif name.endswith("weight"):
            fan_in = numel // shape[0]
            v = math.sqrt(6.0 / fan_in) * (2.0 * u - 1.0)
        else:
            raise ValueError(f"no golden formula for {name}")
        out[begin:end] = v.astype(np.float32)
    return out.reshape(shape)


def fill_golden(model):
    state = model.state_dict()
    with torch.no_grad():
        for k, (name, t) in enumerate(state.items()):
            t.copy_(torch.from_numpy(golden_tensor(name, tuple(t.shape), k)))


def checksum(values):
    flat = values.reshape(-1).astype(np.float64)
    weights = ((np.arange(flat.size, dtype=np.int64) * 2654435761) % 1000).astype(np.float64) / 1000.0
    return [float(np.abs(flat).sum()), float((flat * weights).sum())]


# ---- file writing ---------------------------------------------------------------------------------------------

DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, array in tensors:
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # data section 8-byte aligned, as the reference writer pads
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    print(f"wrote {os.path.relpath(path)}: {8 + len(text) + offset} bytes")


def grad_stride(numel, max_samples=MAX_GRAD_SAMPLES):
    """Every s-th element, s >= numel / max_samples and prime to 2 and 3, so the samples walk through every
    kernel position and channel rather than landing on the same tap of each filter."""
    s = max(1, -(-numel // max_samples))
    while s > 1 and (s % 2 == 0 or s % 3 == 0):
        s += 1
    return s


def weight_record(model, metadata):
    """The formula's weights, summarised before the training step changes any running statistics."""
    state = model.state_dict()
    metadata["state_dict"] = json.dumps(list(state.keys()))
    return [("weight_checksum", np.array([checksum(t.numpy()) for t in state.values()], dtype=np.float64))]


def model_record(model, logits, features, loss, metadata):
    tensors = [("logits", logits.detach().numpy().astype(np.float32)),
               ("features", features.detach().numpy().astype(np.float32)),
               ("loss", np.array([loss.item()], dtype=np.float64))]
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        flat = p.grad.detach().reshape(-1)
        stride = grad_stride(flat.numel())
        tensors.append(("grad." + name, flat[::stride].numpy().astype(np.float64)))
        tensors.append(("grad_norm." + name, np.array([flat.double().norm().item()], dtype=np.float64)))
        metadata["grad_stride." + name] = str(stride)
    return tensors


def describe_logits(tag, logits):
    for row, label in zip(logits, LABELS):
        order = torch.argsort(row, descending=True)
        top = order[:6]
        gaps = (row[top[:-1]] - row[top[1:]]).abs()
        print(f"{tag} image {label}: top-5 {top[:5].tolist()}, logits {[round(v, 4) for v in row[top].tolist()]}, "
              f"smallest gap among top-6 {gaps.min().item():.4g} (logit scale {row.abs().max().item():.3g})")


def set_trainable(model, prefixes):
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(prefix) for prefix in prefixes))


# ---- models ---------------------------------------------------------------------------------------------------

def resnet_features(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def golden_resnet18(images, labels, metadata):
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    fill_golden(model)
    weights = weight_record(model, metadata)
    model.eval()
    with torch.no_grad():
        features = resnet_features(model, images)
        logits = model.fc(features)
        assert torch.equal(logits, model(images))
    describe_logits("resnet18", logits)
    print(f"resnet18 features: mean {features.mean().item():.4g}, max {features.max().item():.4g}")

    model.double()  # the training step in float64: see "Why the training step runs in float64" above
    set_trainable(model, ["layer4.", "fc."])
    model.eval()
    model.layer4.train()  # trainable BatchNorms use batch statistics; frozen ones stay in eval
    loss = F.cross_entropy(model(images.double()), labels)
    loss.backward()
    print(f"resnet18 loss {loss.item():.6g}")
    return model_record(model, logits, features, loss, metadata) + weights


FULL_SAMPLES = 512  # per tensor: 62 parameters x 2 records stay under 0.6 MB


def sampled(prefix, name, values, metadata, tensors):
    flat = values.detach().reshape(-1)
    stride = grad_stride(flat.numel(), FULL_SAMPLES)
    tensors.append((f"{prefix}.{name}", flat[::stride].numpy().astype(np.float64)))
    tensors.append((f"{prefix}_norm.{name}", np.array([flat.double().norm().item()], dtype=np.float64)))
    metadata[f"{prefix}_stride.{name}"] = str(stride)


def golden_resnet18_full_training(images, labels, metadata, lr=0.01, momentum=0.9):
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    fill_golden(model)
    model.double()
    model.train()  # every BatchNorm on batch statistics, every running statistic updated
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    metadata.update(lr=str(lr), momentum=str(momentum))
    tensors = []
    for step in (1, 2):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images.double()), labels)
        loss.backward()
        print(f"resnet18 full training: step {step} loss {loss.item():.6g}")
        tensors.append((f"loss.{step}", np.array([loss.item()], dtype=np.float64)))
        if step == 1:
            for name, p in model.named_parameters():
                sampled("grad", name, p.grad, metadata, tensors)
        optimizer.step()
    for name, p in model.named_parameters():
        sampled("param", name, p, metadata, tensors)
    for name, b in model.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            tensors.append((name, b.detach().numpy().astype(np.float64)))
    return tensors


def golden_vgg16(images, labels, metadata):
    model = torchvision.models.vgg16(num_classes=NUM_CLASSES)
    fill_golden(model)
    weights = weight_record(model, metadata)
    model.eval()
    with torch.no_grad():
        x = torch.flatten(model.avgpool(model.features(images)), 1)
        features = model.classifier[:5](x)
        logits = model.classifier[5:](features)
        assert torch.equal(logits, model(images))
    describe_logits("vgg16", logits)
    print(f"vgg16 features: mean {features.mean().item():.4g}, max {features.max().item():.4g}")

    model.double()
    set_trainable(model, ["features.28.", "classifier.6."])
    model.eval()  # no BatchNorm in VGG16: eval only turns off the dropouts
    loss = F.cross_entropy(model(images.double()), labels)
    loss.backward()
    print(f"vgg16 loss {loss.item():.6g}")
    return model_record(model, logits, features, loss, metadata) + weights


def golden_miniimagenet(images, path):
    model = torchvision.models.resnet18(num_classes=100)
    model.load_state_dict(torch.load(path, map_location="cpu"))
    model.eval()
    with torch.no_grad():
        features = resnet_features(model, images)
        logits = model.fc(features)
    describe_logits("resnet18-miniimagenet", logits)
    return [("logits", logits.numpy()), ("features", features.numpy())]


def load_images():
    transform = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    names = []
    for folder in ["ants", "bees"]:
        directory = os.path.join(DATA, "hymenoptera", "val", folder)
        first = sorted(f for f in os.listdir(directory) if f.endswith(".jpg"))[0]
        names.append(f"hymenoptera/val/{folder}/{first}")
    tensors = [transform(Image.open(os.path.join(DATA, name)).convert("RGB")) for name in names]
    return torch.stack(tensors), names


def main():
    if not os.path.isdir(DATA):
        sys.exit(f"make_golden.py: {DATA} not found (the hymenoptera images are needed)")
    torch.manual_seed(0)
    torch.set_num_threads(1)  # reductions in one fixed order: the files are byte-for-byte reproducible
    torch.use_deterministic_algorithms(True)
    images, names = load_images()
    labels = torch.tensor(LABELS)
    common = {"images": json.dumps(names), "labels": json.dumps(LABELS), "torch": torch.__version__,
              "torchvision": torchvision.__version__, "script": "tests/golden/make_golden.py"}
    write_safetensors(os.path.join(HERE, "golden_inputs.safetensors"), [("images", images.numpy())], dict(common))

    for arch, make in [("resnet18", golden_resnet18), ("vgg16", golden_vgg16)]:
        metadata = dict(common, architecture=arch, num_classes=str(NUM_CLASSES))
        tensors = make(images, labels, metadata)
        write_safetensors(os.path.join(HERE, f"{arch}_golden.safetensors"), tensors, metadata)

    metadata = dict(common, architecture="resnet18", num_classes=str(NUM_CLASSES))
    tensors = golden_resnet18_full_training(images, labels, metadata)
    write_safetensors(os.path.join(HERE, "resnet18_full_training_golden.safetensors"), tensors, metadata)

    trained = os.path.join(DATA, "weights", "resnet18-miniimagenet.pth")
    if os.path.exists(trained):
        metadata = dict(common, architecture="resnet18", num_classes="100",
                        weights="shared/data/weights/resnet18-miniimagenet.pth")
        write_safetensors(os.path.join(HERE, "resnet18_miniimagenet_golden.safetensors"),
                          golden_miniimagenet(images, trained), metadata)
    else:
        print(f"{trained} absent: no trained-backbone golden")


if __name__ == "__main__":
    main()
