"""Time per training step of NYUv2 SegNet-MTAN, per weighting method (a device check).

One step = zero_grad, forward, the three task losses, the method's backward, Adam step: what the
trainer does per batch, without data loading. Full protocol shapes: width 64, batch 2, 288x384
random inputs with targets of the right shapes. Reported: the median over ``--steps`` steps after
``--warmup`` steps (with ``torch.cuda.synchronize`` around each), the ratio to LS measured in the same
run, the peak CUDA memory, and the implied training time of one epoch (398 steps). cuDNN runs as the
reference trainer sets it (deterministic, no autotuning) unless ``--cudnn-benchmark`` is given.

For scale, the GO4Align paper (Table 9) reports 86.2 s per NYUv2 epoch for LS on an A100, data
loading and the test pass included.

Usage::

    PYTHONPATH=src python perf/gpu_nyuv2_step_time.py                     # CUDA, protocol shapes
    PYTHONPATH=src python perf/gpu_nyuv2_step_time.py --device cpu --tiny  # smoke check anywhere

``--methods all`` (default) times every registered method through the weighting protocol, exactly
as the trainer drives it (FAMO's ``after_step`` closure included); ``ls`` is always timed first.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from go4align.benchmarks import nyuv2
from go4align.weighting import available, make

STEPS_PER_EPOCH = math.ceil(795 / nyuv2.PROTOCOL.batch_size)


def random_batch(batch_size: int, size: tuple[int, int], device: torch.device, seed: int = 0):
    """An NYUv2-shaped batch: image, labels in [-1, 13), depth with missing pixels, unit normals."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch_size, 3, *size, generator=g)
    targets = {
        "semantic": torch.randint(-1, nyuv2.NUM_CLASSES, (batch_size, *size), generator=g),
        "depth": torch.rand(batch_size, 1, *size, generator=g) * (torch.rand(batch_size, 1, *size, generator=g) > 0.1),
        "normal": torch.nn.functional.normalize(torch.randn(batch_size, 3, *size, generator=g), dim=1),
    }
    return image.to(device), {task: t.to(device) for task, t in targets.items()}


def step_time(model: torch.nn.Module, batch, method: str, steps: int = 20, warmup: int = 5) -> list[float]:
    """Seconds of each of ``steps`` training steps with ``method`` after ``warmup`` untimed ones."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    images, targets = batch
    weighting = make(method, len(nyuv2.TASKS), **nyuv2.PROTOCOL.method_options.get(method, {})).to(images.device)
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=nyuv2.PROTOCOL.lr)
    cuda = images.is_cuda
    model.train()

    def closure() -> torch.Tensor:
        with torch.no_grad():
            return nyuv2.losses(model(images), targets)

    times = []
    for step in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        predictions, representation = model(images, return_representation=True)
        losses = nyuv2.losses(predictions, targets)
        weighting.backward(losses, shared_parameters=model.shared_parameters(), shared_representation=representation)
        optimizer.step()
        weighting.after_step(closure)
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all", help=f"'all' or comma-separated, from {available()}")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="width 4, 64x96 inputs: a smoke check")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN autotune (the reference does not)")
    args = parser.parse_args(argv)
    names = available() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in available()]
    if unknown or not names:
        parser.error(f"unknown or no method(s) {unknown or names}; available: {available()}")
    args.methods = [m for m in names if m != "stl"]  # STL is a training mode, not a cost
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: CUDA is not available here; use --device cpu --tiny for a smoke check")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
        torch.backends.cudnn.deterministic = not args.cudnn_benchmark
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({torch.get_num_threads()} threads)"
    width, size = (4, (64, 96)) if args.tiny else (64, nyuv2.IMAGE_SIZE)
    batch_size = nyuv2.PROTOCOL.batch_size
    batch = random_batch(batch_size, size, device)
    print(
        f"# NYUv2 SegNet-MTAN step time: {name}, torch {torch.__version__}, width {width}, "
        f"batch {batch_size}x3x{size[0]}x{size[1]}, {args.steps} steps after {args.warmup} warm-up, "
        f"cudnn.benchmark={args.cudnn_benchmark if device.type == 'cuda' else 'n/a'}"
    )
    print(f"{'method':<12} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'x LS':>6} {'peak MiB':>9} {'s/epoch':>8}")
    baseline = None
    for method in ["ls", *[m for m in args.methods if m != "ls"]]:
        torch.manual_seed(0)
        model = nyuv2.build_model("mtan", width=width).to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = step_time(model, batch, method, steps=args.steps, warmup=args.warmup)
        median = statistics.median(times)
        baseline = baseline or median
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "n/a"
        print(
            f"{method:<12} {1e3 * median:>10.2f} {1e3 * min(times):>8.2f} {1e3 * max(times):>8.2f} "
            f"{median / baseline:>6.2f} {peak:>9} {STEPS_PER_EPOCH * median:>8.1f}"
        )
        del model


if __name__ == "__main__":
    main()
