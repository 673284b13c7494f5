"""Data-parallel training for real: a ``torchrun`` launcher and the workers it starts.

Notebook 11 runs ``DistributedDataParallel`` in genuine separate processes, the
way it runs on a cluster: the notebook calls :func:`launch`, which starts::

    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        -m course_utils.distributed TASK --code FILE --out DIR --options JSON

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` for every worker; each worker joins the process group (gloo on
CPU, NCCL when there is one GPU per process), runs the task and saves its
result to ``DIR/rank<r>.pt``, which :func:`launch` reads back, one dict per rank.

The self-checks' short ``step`` launches skip the cost of a fresh ``torchrun``
and fresh interpreters (several seconds each, mostly importing PyTorch): their
workers are forked from a launch server (:func:`launch_server`) that imported
PyTorch once, get the same environment variables and run the same :func:`main`.

**How the student's code reaches the workers.** The workers are fresh Python
processes: they cannot see functions defined in a notebook. :func:`launch`
takes the functions, writes their source (:func:`function_source`) to ``FILE``
in a fresh temporary folder, and every worker executes that file in a namespace
that already holds the names the notebook's setup cell imports (:data:`WORKER_NAMESPACE`).
The functions must therefore be self-contained: they may use those names and
their arguments, nothing else defined in the notebook.

Tasks (``TASK``):

* ``step``: a few SGD steps on a small seeded problem, each rank on its own
  contiguous slice of every batch. Mode ``average`` uses a plain model and the
  student's ``average_gradients(model)``; mode ``ddp`` wraps the model in
  ``DistributedDataParallel`` and calls the student's ``train_step``. Compare the
  result with :func:`reference_run`, one process on the whole batch.
* ``cifar``: a short real training run on a CIFAR-10 subset with the student's
  ``make_loader`` and ``train_step``; records what every rank saw.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Subset

__all__ = [
    "WORKER_NAMESPACE",
    "LaunchError",
    "SmallConvNet",
    "flatten_params",
    "function_source",
    "launch",
    "launch_server",
    "main",
    "pick_backend",
    "reference_run",
    "run_torchrun",
    "shard",
    "toy_batches",
    "toy_model",
]

#: Names every worker provides to the student's functions (the notebook's setup
#: cell imports the same ones, so the functions behave alike in both places).
WORKER_NAMESPACE: dict[str, Any] = {
    "torch": torch,
    "nn": nn,
    "F": F,
    "dist": dist,
    "np": np,
    "DataLoader": DataLoader,
    "DistributedSampler": DistributedSampler,
    "DDP": DDP,
}

_TAIL_LINES = 60


class LaunchError(RuntimeError):
    """A ``torchrun`` launch failed or timed out; the message holds the workers' error."""

    killed_by_signal = False  # a worker died of a signal, not of an error of its own
    signalled: list[str] = []  # which ranks died of which signal (the launch server's runs)


# --------------------------------------------------------------------------- launcher side


def function_source(*functions: Callable[..., Any] | str) -> str:
    """The source code of ``functions`` (or source strings), ready to write to a file.

    Works for functions defined in a Jupyter cell (IPython keeps cell sources
    where :func:`inspect.getsource` finds them).
    """
    parts = []
    for fn in functions:
        if isinstance(fn, str):
            parts.append(textwrap.dedent(fn).strip())
            continue
        try:
            parts.append(textwrap.dedent(inspect.getsource(fn)).strip())
        except (OSError, TypeError) as err:
            raise LaunchError(
                f"cannot read the source of {fn!r} ({err}); define it with `def` in a notebook "
                "cell or a file, not with exec or lambda."
            ) from None
    return "\n\n\n".join(parts) + "\n"


def pick_backend(nproc: int) -> str:
    """``nccl`` when NCCL is built in and there is one CUDA GPU per process, else ``gloo``."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= nproc and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def _stream(proc: subprocess.Popen[str], echo: bool, lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if echo and not _is_launcher_noise(line):
            print(line, end="", flush=True)


def _is_launcher_noise(line: str) -> bool:
    return any(s in line for s in ("OMP_NUM_THREADS", "*****", "torch.distributed.run", "warnings.warn"))


def run_torchrun(
    target: Sequence[str],
    *,
    nproc: int = 2,
    timeout: float = 300,
    echo: bool = True,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node N TARGET...``.

    ``target`` is a script path and its arguments, or ``["-m", "module", ...]``.
    Workers' output is printed as it comes (``echo``) and returned as lines.
    Raises :class:`LaunchError` with the output's tail when the run fails or
    exceeds ``timeout`` seconds (then every process of the run is killed).
    """
    # One process per core share; an OMP_NUM_THREADS already set (e.g. by CI) is kept.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    run_env = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONUNBUFFERED="1", **(env or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", *target]
    try:
        return _run_once(cmd, run_env, timeout, echo)
    except LaunchError as err:
        if not err.killed_by_signal:
            raise
        # A worker killed by a signal (e.g. SIGABRT, "terminate called without an active
        # exception" under load) is the launcher's failure, not the code's: once more.
        if echo:
            print("torchrun: a worker was killed by a signal; launching once more", flush=True)
        return _run_once(cmd, run_env, timeout, echo)


# A worker's death by a signal other than the SIGTERM or SIGKILL torchrun sends the ranks
# it stops once one has failed.
_SIGNAL_EXIT = re.compile(r"exitcode\s*:\s*-(?!(?:9|15)\b)\d+|terminate called without an active exception")


def _run_once(cmd: list[str], run_env: dict[str, str], timeout: float, echo: bool) -> list[str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=run_env, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=_stream, args=(proc, echo, lines), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        reader.join(timeout=5)
        raise LaunchError(
            f"torchrun did not finish within {timeout:.0f} s and was stopped. A worker probably "
            "waits in a collective (all_reduce, backward of a DDP model) that another rank never "
            "reaches: every rank must run the same collectives in the same order.\n"
            + _tail(lines)
        ) from None
    reader.join(timeout=60)  # the rest of the output, still in the pipe on a busy machine
    if proc.returncode != 0:
        error = LaunchError(f"torchrun failed (exit code {proc.returncode}).\n" + _tail(lines))
        # A signal decides even beside another rank's error: that error (a peer's closed
        # connection) may follow from it. A code's own error alone is not launched again.
        error.killed_by_signal = proc.returncode < 0 or bool(_SIGNAL_EXIT.search("\n".join(lines)))
        raise error
    return lines


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    proc.wait()


def _tail(lines: list[str]) -> str:
    kept = [ln for ln in lines if not _is_launcher_noise(ln)][-_TAIL_LINES:]
    return "Last lines of the workers' output:\n" + "\n".join(kept)


def launch(
    task: str,
    *,
    functions: Iterable[Callable[..., Any] | str] = (),
    nproc: int = 2,
    backend: str | None = None,
    timeout: float = 300,
    echo: bool = True,
    launcher: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Run ``task`` on ``nproc`` processes; return each rank's result.

    ``functions`` (the student's, or source strings) are shipped to the workers
    as source code; ``backend`` defaults to :func:`pick_backend`; ``options``
    (JSON-serialisable) go to the task. When a worker raises, the error names the
    rank and shows its traceback.

    ``launcher`` starts the processes: ``"torchrun"`` (a fresh ``torchrun`` and fresh
    workers, each importing PyTorch: several seconds) or ``"server"`` (workers forked
    from a launch server that has imported PyTorch once per session, see
    :func:`launch_server`: a fraction of a second). Both give every rank torchrun's
    environment and run the same worker code. The default is ``"server"`` for the
    self-checks' ``step`` task and ``"torchrun"`` for the training run (``cifar``).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    launcher = launcher or ("server" if task == "step" else "torchrun")
    if launcher not in ("server", "torchrun"):
        raise ValueError(f"launcher must be 'server' or 'torchrun', got {launcher!r}")
    options = dict(options, backend=backend or pick_backend(nproc))
    with tempfile.TemporaryDirectory(prefix="course-ddp-") as tmp:
        folder = Path(tmp)
        code = folder / "student_code.py"
        code.write_text(function_source(*functions))
        argv = [task, "--code", str(code), "--out", str(folder), "--options", json.dumps(options)]
        try:
            if launcher == "server":
                _run_on_server(argv, nproc=nproc, timeout=timeout, echo=echo)
            else:
                run_torchrun(["-m", "course_utils.distributed", *argv], nproc=nproc, timeout=timeout, echo=echo)
        except LaunchError as err:
            errors = sorted(folder.glob("rank*.error"))
            if errors:
                details = "\n".join(p.read_text() for p in errors)
                cause = "".join(f"{line}, twice; the errors below may follow from it.\n" for line in err.signalled)
                raise LaunchError(f"{cause}a worker raised an exception:\n{details}") from None
            raise err from None
        missing = [r for r in range(nproc) if not (folder / f"rank{r}.pt").exists()]
        if missing:
            raise LaunchError(f"rank {missing[0]} ended without a result: the code exited the worker "
                              "(sys.exit, os._exit or quit) before the task finished.")
        return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(nproc)]


def launch_server() -> Any:
    """The multiprocessing context whose fork server has imported this module (and PyTorch).

    Python's ``forkserver`` start method: the server is a fresh interpreter (nothing of
    the calling process, a notebook kernel included, is inherited), started on first use
    and kept for the session; each worker is a ``fork`` of it, so it starts with PyTorch
    already imported instead of importing it again.
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    # torch._dynamo: the first optimizer a process builds imports it (about 3 s).
    context.set_forkserver_preload(["course_utils.distributed", "torch._dynamo"])
    return context


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_rank(argv: list[str], env: dict[str, str], log: str) -> None:
    """One rank, in a process forked from the launch server: torchrun's environment, then :func:`main`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.update(env)
    torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    sys.exit(main(argv))


def _run_on_server(argv: list[str], *, nproc: int, timeout: float, echo: bool) -> None:
    """Run :func:`main` with ``argv`` on ``nproc`` ranks forked from :func:`launch_server`.

    Like torchrun: when a rank fails the others are stopped, a rank killed by a signal
    is the launcher's failure and the whole launch runs once more, and a launch that
    outlives ``timeout`` is stopped. Raises :class:`LaunchError`.
    """
    from multiprocessing.connection import wait

    context = launch_server()
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    folder = Path(argv[argv.index("--out") + 1])
    for attempt in (1, 2):
        for stale in (*folder.glob("rank*.error"), *folder.glob("rank*.pt"), *folder.glob("rank*.log")):
            stale.unlink()  # a first attempt's files must not speak for the second
        port = _free_port()
        logs = [str(folder / f"rank{r}.log") for r in range(nproc)]
        procs = []
        for rank in range(nproc):
            env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                   "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port), "OMP_NUM_THREADS": threads, "TORCHELASTIC_RUN_ID": f"server-{port}"}
            proc = context.Process(target=_server_rank, args=(argv, env, logs[rank]), daemon=True)
            proc.start()
            procs.append(proc)
        timed_out = _wait_for_ranks(procs, wait, timeout)
        lines = [line for log in logs if os.path.exists(log)
                 for line in Path(log).read_text(errors="replace").splitlines()]
        if echo:
            for line in lines:
                if not _is_launcher_noise(line):
                    print(line, flush=True)
        codes = [p.exitcode for p in procs]
        if timed_out:
            raise LaunchError(
                f"the workers did not finish within {timeout:.0f} s and were stopped. A worker probably "
                "waits in a collective (all_reduce, backward of a DDP model) that another rank never "
                "reaches: every rank must run the same collectives in the same order.\n" + _tail(lines))
        if all(code == 0 for code in codes):
            return
        # A rank killed by a signal other than the launcher's own SIGKILL: the other ranks'
        # errors (a peer's closed connection) follow from it, so it decides.
        signalled = [f"rank {rank} was killed by {_signal_name(-code)}"
                     for rank, code in enumerate(codes) if code is not None and code < 0 and code != -signal.SIGKILL]
        if attempt == 1 and signalled:
            if echo:
                print(f"{signalled[0]}; launching once more", flush=True)
            continue
        error = LaunchError(f"a worker failed (exit codes {codes}).\n" + _tail(lines))
        error.killed_by_signal = bool(signalled)
        error.signalled = signalled
        raise error


_FAILURE_GRACE_S = 3.0  # after one rank fails, how long the others get to end on their own


def _wait_for_ranks(procs: list[Any], wait: Callable[..., Any], timeout: float) -> bool:
    """Wait until every rank has ended, the first failure's grace is over, or ``timeout``.

    Ranks still running then are killed (SIGKILL). The grace lets the ranks that a failed
    one brings down end with their own exit codes, so a signal that started it all is seen.
    Returns whether the timeout was reached.
    """
    deadline = time.monotonic() + timeout
    timed_out = False
    while any(p.exitcode is None for p in procs):
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        wait([p.sentinel for p in procs if p.exitcode is None], timeout=min(left, 1.0))
        if any(p.exitcode not in (None, 0) for p in procs):
            grace = time.monotonic() + min(_FAILURE_GRACE_S, max(0.0, deadline - time.monotonic()))
            while any(p.exitcode is None for p in procs) and time.monotonic() < grace:
                wait([p.sentinel for p in procs if p.exitcode is None], timeout=grace - time.monotonic())
            break  # one rank failed: the others would wait for it in a collective
    for proc in procs:
        if proc.exitcode is None:
            proc.kill()
        proc.join()
    return timed_out


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------- problems


def toy_model(case: dict[str, Any]) -> nn.Module:
    """The seeded MLP of a ``step`` case (identical in every process for the same seed)."""
    torch.manual_seed(case["seed"])
    model = nn.Sequential(
        nn.Linear(case.get("in_features", 12), case.get("hidden", 16)),
        nn.Tanh(),
        nn.Linear(case.get("hidden", 16), case.get("classes", 4)),
    )
    if case.get("freeze_first_bias"):
        model[0].bias.requires_grad_(False)
    return model


def toy_batches(case: dict[str, Any], world_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One global batch of ``batch * world_size`` examples for each step of a case."""
    gen = torch.Generator().manual_seed(10_000 + case["seed"])
    total = case["batch"] * world_size
    batches = []
    for _ in range(case.get("steps", 1)):
        x = torch.randn(total, case.get("in_features", 12), generator=gen)
        y = torch.randint(0, case.get("classes", 4), (total,), generator=gen)
        batches.append((x, y))
    return batches


def shard(tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous slice of a global batch (equal slices)."""
    per_rank = tensor.shape[0] // world_size
    return tensor[rank * per_rank:(rank + 1) * per_rank]


def _optimizer(model: nn.Module, case: dict[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=case.get("lr", 0.5), momentum=case.get("momentum", 0.0))


def reference_run(
    case: dict[str, Any], world_size: int = 2, *, loss_scale: float = 1.0, zero_grad: bool = True
) -> dict[str, torch.Tensor]:
    """Parameters after the case's steps in ONE process on the whole global batch.

    This is what ``world_size`` processes on slices must reproduce. ``loss_scale``
    and ``zero_grad=False`` reproduce classic mistakes, for diagnosis: gradients
    summed over ranks instead of averaged act like ``loss_scale=world_size``; a
    ``reduction="sum"`` loss acts like ``loss_scale=batch * world_size / world_size``.
    """
    model = toy_model(case)
    optimizer = _optimizer(model, case)
    for x, y in toy_batches(case, world_size):
        if zero_grad:
            optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y) * loss_scale
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def flatten_params(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """All tensors of a state dict as one flat float64 vector (in key order), for comparisons."""
    return torch.cat([v.detach().cpu().reshape(-1).to(torch.float64) for v in state.values()])


class SmallConvNet(nn.Module):
    """conv(3->16) -> ReLU -> pool -> conv(16->32) -> ReLU -> pool -> fc(2048->10), no BatchNorm."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(32 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


# --------------------------------------------------------------------------- worker side


def _task_step(ns: dict[str, Any], options: dict[str, Any], device: torch.device) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    results = []
    for case in options["cases"]:
        model = toy_model(case).to(device)
        if options["mode"] == "ddp":
            wrapped: nn.Module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
            optimizer = _optimizer(wrapped, case)
        else:
            wrapped, optimizer = model, _optimizer(model, case)
        losses = []
        for x, y in toy_batches(case, world):
            x, y = shard(x, rank, world).to(device), shard(y, rank, world).to(device)
            if options["mode"] == "ddp":
                losses.append(ns["train_step"](wrapped, optimizer, x, y))
            else:
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                ns["average_gradients"](model)
                optimizer.step()
        params = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        results.append({"params": params, "losses": losses})
    return {"cases": results}


def _cifar_subset(train: bool, size: int, seed: int) -> Subset:
    from torchvision import transforms

    from course_utils.data import cifar10

    normalise = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])
    full = cifar10(train=train, transform=normalise)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    return Subset(full, order[:size].tolist())


def _task_cifar(ns: dict[str, Any], options: dict[str, Any], device: torch.device) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    seed = options.get("seed", 0)
    train_set = _cifar_subset(True, options["n_train"], seed)
    torch.manual_seed(seed)
    model = SmallConvNet().to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=options.get("lr", 0.05), momentum=0.9)
    indices, losses, epoch_times = [], [], []
    for epoch in range(options["epochs"]):
        loader = ns["make_loader"](train_set, options["batch_size"], rank, world, epoch, seed)
        indices.append([int(i) for i in loader.sampler])
        ddp.train()
        start = time.perf_counter()
        for x, y in loader:
            losses.append(float(ns["train_step"](ddp, optimizer, x.to(device), y.to(device))))
        epoch_times.append(time.perf_counter() - start)
        if rank == 0:
            print(f"[rank 0] epoch {epoch + 1}/{options['epochs']}: mean loss "
                  f"{np.mean(losses[-len(loader):]):.3f} ({epoch_times[-1]:.1f} s)", flush=True)
    result: dict[str, Any] = {"rank": rank, "world_size": world, "backend": dist.get_backend(),
                              "device": str(device), "indices": indices, "losses": losses,
                              "epoch_times": epoch_times}
    if rank == 0:  # evaluate once; every rank holds the same weights
        test_set = _cifar_subset(False, options["n_test"], seed)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(test_set, batch_size=500):
                correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        result["test_accuracy"] = correct / len(test_set)
    return result


TASKS: dict[str, Callable[[dict[str, Any], dict[str, Any], torch.device], dict[str, Any]]] = {
    "step": _task_step,
    "cifar": _task_cifar,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point (started by ``torchrun``, one process per rank)."""
    parser = argparse.ArgumentParser(description="a course_utils.distributed worker")
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--code", type=Path, required=True, help="file with the student's functions")
    parser.add_argument("--out", type=Path, required=True, help="folder for rank<r>.pt results")
    parser.add_argument("--options", default="{}", help="task options as JSON")
    args = parser.parse_args(argv)
    options = json.loads(args.options)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    backend = options.get("backend") or pick_backend(int(os.environ["WORLD_SIZE"]))
    device = torch.device(f"cuda:{local_rank}" if backend == "nccl" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=options.get("collective_timeout", 120)))
    try:
        namespace = dict(WORKER_NAMESPACE)
        exec(compile(args.code.read_text(), str(args.code), "exec"), namespace)  # noqa: S102
        result = TASKS[args.task](namespace, options, device)
        torch.save(result, args.out / f"rank{rank}.pt")
    except Exception:
        (args.out / f"rank{rank}.error").write_text(f"[rank {rank}] {traceback.format_exc()}")
        raise
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
