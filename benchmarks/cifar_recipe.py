"""Accuracy against wall time for the course's CIFAR-10 recipe (notebook 09's reference solution).

Usage: ``python benchmarks/cifar_recipe.py [--recipe resnet9|airnet] [--epochs N] [--threads N] [--device cpu]``

Trains :class:`course_utils.cifar.ResNet9` (width 16, about 0.41 M parameters) on all
50,000 training images with :func:`course_utils.cifar.fit` (batch 256, SGD with Nesterov
momentum, one-cycle learning rate peaking at 0.2, label smoothing 0.1, per-image random
crop and flip done on whole uint8 batches, channels-last) and evaluates on the full
10,000-image test set after every epoch. Prints, per epoch: training seconds (wall clock,
evaluation excluded), the process CPU seconds, the load average, the test accuracy; at the
end the accuracy with test-time flips. Writes ``benchmarks/results/cifar_recipe.json``
(updated after every epoch) and ``benchmarks/results/cifar_recipe.png``.

``--recipe airnet`` measures :func:`course_utils.cifar.fit_air` instead: a half-width
:class:`~course_utils.cifar.AirNet` (airbench94's network and recipe: frozen whitening first
layer, batch 1024, lookahead, alternating flips) for 3.8 epochs by default, and reports the
accuracy with flip and with flip-and-shift test-time augmentation (``tta=2``). Results go to
``cifar_airnet.json`` / ``.png``.

The machine's load matters: on a shared CPU the wall time is not the time the recipe
needs. The process CPU time is reported beside it (with ``--threads 1`` it is close to
single-core compute time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from course_utils import cifar
from course_utils.runtime import get_device, set_seed

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=["resnet9", "airnet"], default="resnet9")
    parser.add_argument("--epochs", type=float, default=None, help="default: 8 (resnet9), 3.8 (airnet)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="file stem for the results (default: by recipe)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--n-train", type=int, default=None, help="a subset, for smoke tests only")
    parser.add_argument("--replot", type=Path, default=None, help="redraw the plot of a results JSON and exit")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        return 0
    airnet = args.recipe == "airnet"
    args.epochs = args.epochs or (3.8 if airnet else 8)
    args.name = args.name or ("cifar_airnet" if airnet else "cifar_recipe")

    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed, deterministic=False)
    device = get_device(args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out_json, out_png = args.out_dir / f"{args.name}.json", args.out_dir / f"{args.name}.png"

    x_train, y_train = cifar.load_tensors(train=True, n=args.n_train)
    x_test, y_test = cifar.load_tensors(train=False)
    train_loader = cifar.TensorLoader(
        x_train, y_train, args.batch_size, shuffle=True, augment=True, drop_last=True,
        device=device, channels_last=True, seed=args.seed,
    )
    test_loader = cifar.TensorLoader(x_test, y_test, 1000, device=device, channels_last=True)
    if airnet:
        model = cifar.AirNet(widths=(2 * args.width, 8 * args.width, 8 * args.width)).to(device)
    else:
        model = cifar.ResNet9(width=args.width).to(device, memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())

    record: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "params": params,
        "config": {k: str(v) for k, v in vars(args).items()}, "load_at_start": os.getloadavg(), "epochs": [],
    }
    print(f"{record['device']}, {record['threads']} threads, {params:,} parameters, "
          f"load average at start {record['load_at_start'][0]:.1f}", flush=True)
    cpu_start, wall_start = time.process_time(), time.perf_counter()

    def log(line: str) -> None:
        print(f"{line} | cpu {time.process_time() - cpu_start:6.0f} s | load {os.getloadavg()[0]:.1f}", flush=True)
        record["epochs"].append({"cpu_s": time.process_time() - cpu_start, "load": os.getloadavg()[0],
                                 "wall_incl_eval_s": time.perf_counter() - wall_start})
        out_json.write_text(json.dumps(record, indent=1))

    if airnet:
        history = cifar.fit_air(model, x_train, y_train, args.epochs, test=(x_test, y_test), seed=args.seed,
                                log=log)
    else:
        history = cifar.fit(model, train_loader, num_epochs=int(args.epochs), test_loader=test_loader,
                            lr=args.lr, progress=False, log=log)
    for entry, epoch in zip(record["epochs"], history, strict=True):
        entry.update(epoch=epoch.epoch, train_s=epoch.seconds, train_loss=epoch.train_loss,
                     test_acc=epoch.test_acc)
    record["test_acc_flip_tta"] = cifar.evaluate(model, test_loader, tta=True)
    record["test_acc_flip_shift_tta"] = cifar.evaluate(model, test_loader, tta=2)
    record["load_at_end"] = os.getloadavg()
    out_json.write_text(json.dumps(record, indent=1))
    final = history[-1]
    print(f"final: {final.test_acc:.2%} test accuracy after {final.epoch} epochs, {final.seconds:.0f} s of "
          f"training ({time.process_time() - cpu_start:.0f} CPU s); with flip TTA "
          f"{record['test_acc_flip_tta']:.2%}, flip and shift TTA {record['test_acc_flip_shift_tta']:.2%}",
          flush=True)

    plot(record, out_png)
    print(f"wrote {out_json} and {out_png}")
    return 0


def plot(record: dict, out_png: Path) -> None:
    """Accuracy against training time (wall and CPU), the test-time-augmentation figures at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = record["epochs"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([e["train_s"] for e in epochs], [100 * e["test_acc"] for e in epochs], "o-",
            label="wall time (training only)")
    ax.plot([e["cpu_s"] for e in epochs], [100 * e["test_acc"] for e in epochs], "s--", alpha=0.7,
            label="process CPU time")
    for key, marker, label in (("test_acc_flip_tta", "^", "with flip TTA"),
                               ("test_acc_flip_shift_tta", "*", "with flip and shift TTA")):
        if key in record:
            ax.plot([epochs[-1]["train_s"]], [100 * record[key]], marker, ms=9, label=f"{label} (end)")
    recipe = record["config"].get("recipe", "resnet9")
    ax.axhline(88 if recipe == "airnet" else 85, color="gray", lw=0.8, ls=":")
    ax.axvline(600, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="seconds", ylabel="test accuracy (%, 10,000 images)",
           title=f"CIFAR-10 recipe {recipe}, width {record['config']['width']}, {record['device']}, "
                 f"{record['threads']} threads\nload average {record['load_at_start'][0]:.1f} at start")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
