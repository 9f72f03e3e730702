#!/usr/bin/env python3
"""PyTorch's side of tl bench: the same model rows (ResNet18 and VGG16; inference, full training step, fine-tuning
the top, head only) measured the same way, written as JSON that `tl bench --render OURS --reference THIS` puts beside
ours with the ratio tl/PyTorch per row.

Configurations a PyTorch user would pick (--configs):
  eager_fp32     eager, float32; TF32 as stated in the output (cuDNN convolutions on by default, as PyTorch's
                 default; cuBLAS matmuls per --matmul-tf32, PyTorch's default off)
  eager_bf16_cl  eager, channels_last model and inputs, torch.autocast bf16
  compile        torch.compile(mode=--compile-mode, dynamic=False) of the fp32 model (PyTorch >= 2; optional)

The same work as tl: frozen parameters have requires_grad=False and every BatchNorm whose parameters are all frozen
is in eval mode (tl's frozen-BN rule); SGD momentum 0.9 over the trainable parameters, softmax cross-entropy on random
labels, zero_grad inside the step. Same timing: inputs already on the device, warm-up steps, then each timed step
between two CUDA events (GPU) or perf_counter readings (CPU), median reported.

Runs on PyTorch 2.x with a GPU and on Debian's python3-torch 1.13 on the CPU (`--device cpu`). The JSON is rewritten
after every row (a row in progress is marked as unfinished first), so a run cut short by `timeout` keeps what it did.
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

# tl waits passively in OpenMP unless told otherwise (spinning threads starve each other on a loaded machine: 40x
# slower PyTorch CPU steps measured on a shared 2-core machine); give PyTorch the same, before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

MODES = ("inference", "train", "finetune", "head")


def build(name, classes):
    ctor = getattr(torchvision.models, name)
    try:
        return ctor(weights=None, num_classes=classes)
    except TypeError:  # torchvision < 0.13
        return ctor(pretrained=False, num_classes=classes)


def configure(model, name, mode):
    """requires_grad per mode, train/eval, and eval for every BatchNorm with no trainable parameter."""
    for p in model.parameters():
        p.requires_grad_(mode == "train")
    trainable = []
    if mode == "finetune":
        if name == "resnet18":
            trainable = [model.layer4, model.fc]
        else:  # features.24 onward + classifier
            trainable = [m for i, m in enumerate(model.features) if i >= 24] + [model.classifier]
    elif mode == "head":
        trainable = [model.fc] if name == "resnet18" else [model.classifier[6]]
    for module in trainable:
        for p in module.parameters():
            p.requires_grad_(True)
    model.train(mode != "inference")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def device_name(device):
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return "%s, %d MiB" % (p.name, p.total_memory >> 20)
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d threads" % (model, torch.get_num_threads())


def time_steps(step, device, warmup, reps):
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            starts[i].record()
            step()
            ends[i].record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def release(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


class Writer:
    """Keeps the document and rewrites the JSON file atomically after every change."""

    def __init__(self, path, doc):
        self.path, self.doc = path, doc
        self.save()

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)

    def start(self, row):
        self.doc["models"].append(dict(row, error="did not finish (the run was stopped, e.g. by its time limit)"))
        self.save()

    def finish(self, row):
        self.doc["models"][-1] = row
        self.save()


def run_row(model, name, mode, config, batch, args, device, compile_mode):
    configure(model, name, mode)
    channels_last = config == "eager_bf16_cl"
    bf16 = config == "eager_bf16_cl"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    x = (torch.rand(batch, 3, args.image_size, args.image_size, device=device) * 2 - 1).contiguous(
        memory_format=memory_format)
    y = torch.randint(0, args.classes, (batch,), device=device)
    net = model
    if compile_mode:
        torch._dynamo.reset()
        net = torch.compile(model, mode=compile_mode, dynamic=False)

    def autocast():
        if bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=device.type, enabled=False)

    if mode == "inference":
        def step():
            with torch.inference_mode(), autocast():
                net(x)
        optimizer = None
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.time()
    times = time_steps(step, device, args.warmup, args.reps)
    ms = statistics.median(times)
    row = {"ms": ms, "ms_min": min(times), "ms_max": max(times), "images_per_s": batch * 1000.0 / ms,
           "peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
           "warmup": args.warmup, "reps": args.reps, "wall_s": time.time() - t0}
    del optimizer, net, x, y
    for p in model.parameters():
        p.grad = None
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="resnet18,vgg16")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--batches", default=None, help="default 32,64,128,256 on cuda, 8 on cpu")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=None, help="default 3 on cuda, 1 on cpu")
    ap.add_argument("--reps", type=int, default=None, help="default 10 on cuda, 3 on cpu")
    ap.add_argument("--configs", default=None, help="default eager_fp32,eager_bf16_cl on cuda, eager_fp32 on cpu; "
                    "add compile for torch.compile")
    ap.add_argument("--compile-mode", default="max-autotune")
    ap.add_argument("--tf32", choices=("on", "off"), default="on", help="cuDNN convolutions (PyTorch's default: on)")
    ap.add_argument("--matmul-tf32", choices=("on", "off"), default="off", help="cuBLAS matmuls (default: off)")
    ap.add_argument("--no-cudnn-benchmark", action="store_true", help="leave torch.backends.cudnn.benchmark off")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--time-budget", type=float, default=0, help="seconds; rows after it is spent are skipped")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("pytorch_reference.py: --device cuda but torch.cuda.is_available() is False")
    args.batches = [int(b) for b in (args.batches or ("32,64,128,256" if cuda else "8")).split(",") if b]
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    args.reps = args.reps if args.reps is not None else (10 if cuda else 3)
    configs = (args.configs or ("eager_fp32,eager_bf16_cl" if cuda else "eager_fp32")).split(",")
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            sys.exit("pytorch_reference.py: unknown mode %r (%s)" % (m, ", ".join(MODES)))
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = args.matmul_tf32 == "on"
    torch.backends.cudnn.benchmark = cuda and not args.no_cudnn_benchmark
    torch.manual_seed(1)

    doc = {"tool": "pytorch", "format": 1, "command": "python3 " + " ".join(sys.argv),
           "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
           "python": platform.python_version(), "device_name": device_name(device),
           "tf32": ({"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
                    if cuda else None),
           "cudnn_benchmark": torch.backends.cudnn.benchmark, "threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
           "timing": "median of the timed steps after warm-up; CUDA events around each step (GPU), perf_counter (CPU)",
           "models": [], "notes": []}
    if cuda:
        doc["cudnn_version"] = torch.backends.cudnn.version()
    out = Writer(args.json, doc)
    began = time.time()
    for config in configs:
        compile_mode = None
        if config == "compile":
            if not hasattr(torch, "compile"):
                doc["notes"].append("compile skipped: torch.compile needs PyTorch 2 (this is %s)" % torch.__version__)
                out.save()
                continue
            compile_mode = args.compile_mode
            config = "compile_" + compile_mode
        elif config not in ("eager_fp32", "eager_bf16_cl"):
            sys.exit("pytorch_reference.py: unknown config %r (eager_fp32, eager_bf16_cl, compile)" % config)
        precision = {"eager_fp32": "fp32", "eager_bf16_cl": "bf16 autocast, channels_last"}.get(config, "fp32")
        for name in [m for m in args.models.split(",") if m]:
            model = build(name, args.classes).to(device)
            for batch in args.batches:
                for mode in modes:
                    row = {"device": device.type, "model": name, "batch": batch, "image": args.image_size,
                           "mode": mode, "config": config, "precision": precision}
                    if args.time_budget and time.time() - began > args.time_budget:
                        row["error"] = "skipped: the time budget of %g s was spent" % args.time_budget
                        doc["models"].append(row)
                        out.save()
                        continue
                    out.start(row)
                    try:
                        row.update(run_row(model, name, mode, config, batch, args, device, compile_mode))
                        print("pytorch %s %s %s batch %d: %.1f images/s (%.2f ms)" % (
                            config, name, mode, batch, row["images_per_s"], row["ms"]), file=sys.stderr, flush=True)
                    except Exception as e:  # out of memory, compile failures: a row says so, the run goes on
                        row["error"] = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:300]
                        print("pytorch %s %s %s batch %d: %s" % (config, name, mode, batch, row["error"]),
                              file=sys.stderr, flush=True)
                    out.finish(row)
                    for p in model.parameters():
                        p.grad = None
                    release(device)
            del model
            release(device)
    if not args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
