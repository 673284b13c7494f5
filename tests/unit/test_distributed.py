"""course_utils.distributed: shipping functions to torchrun workers, the reference run, launches."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from course_utils import distributed


def average_gradients(model):
    world_size = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world_size


def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_function_source_ships_functions_and_strings():
    source = distributed.function_source(train_step, "def helper():\n    return 1\n")
    namespace = dict(distributed.WORKER_NAMESPACE)
    exec(source, namespace)
    assert callable(namespace["train_step"]) and namespace["helper"]() == 1


def test_function_source_explains_functions_without_source():
    with pytest.raises(distributed.LaunchError, match="cannot read the source"):
        distributed.function_source(len)


def test_pick_backend_is_gloo_without_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.pick_backend(2) == "gloo"


def test_shards_split_the_global_batch():
    case = {"seed": 1, "batch": 3, "steps": 2}
    batches = distributed.toy_batches(case, world_size=2)
    assert len(batches) == 2 and batches[0][0].shape == (6, 12)
    x = batches[0][0]
    assert torch.equal(torch.cat([distributed.shard(x, r, 2) for r in range(2)]), x)


def test_reference_run_loss_scale_is_a_larger_step():
    """Plain SGD: scaling the loss by 2 is the same as doubling the learning rate."""
    case = {"seed": 2, "batch": 4, "lr": 0.1}
    scaled = distributed.flatten_params(distributed.reference_run(case, loss_scale=2.0))
    doubled = distributed.flatten_params(distributed.reference_run(dict(case, lr=0.2)))
    assert torch.allclose(scaled, doubled, atol=1e-6)
    start = distributed.flatten_params(distributed.toy_model(case).state_dict())
    assert not torch.allclose(start, distributed.flatten_params(distributed.reference_run(case)))


@pytest.mark.slow
def test_two_processes_match_one_process_with_twice_the_batch():
    """Both launchers: torchrun's fresh processes and the launch server's forks."""
    cases = [{"seed": 0, "batch": 4, "steps": 2, "momentum": 0.9, "freeze_first_bias": True}]
    manual = distributed.launch("step", functions=[average_gradients], mode="average", cases=cases,
                                backend="gloo", echo=False, timeout=240)
    ddp = distributed.launch("step", functions=[train_step], mode="ddp", cases=cases,
                             backend="gloo", echo=False, timeout=240)
    by_torchrun = distributed.launch("step", functions=[train_step], mode="ddp", cases=cases,
                                     backend="gloo", echo=False, timeout=240, launcher="torchrun")
    expected = distributed.flatten_params(distributed.reference_run(cases[0]))
    for result in manual + ddp + by_torchrun:
        got = distributed.flatten_params(result["cases"][0]["params"])
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert all(isinstance(v, float) for r in ddp for v in r["cases"][0]["losses"])


@pytest.mark.slow
def test_a_failing_worker_reports_its_traceback():
    broken = "def train_step(model, optimizer, x, y):\n    raise ValueError('student bug here')\n"
    with pytest.raises(distributed.LaunchError, match="student bug here"):
        distributed.launch("step", functions=[broken], mode="ddp", cases=[{"seed": 0, "batch": 2}],
                           backend="gloo", echo=False, timeout=240)


_ABORTS_ONCE = '''
import os, sys
marker = os.path.join(sys.argv[1], "aborted")
if os.environ["RANK"] == "0" and not os.path.exists(marker):  # one rank, once: no race between ranks
    open(marker, "w").close()
    os.abort()  # SIGABRT, as when a worker dies with "terminate called without an active exception"
print("worker ran", os.environ["RANK"], flush=True)
'''

_RAISES = '''
import os, sys
with open(os.path.join(sys.argv[1], "runs"), "a") as fh:
    print(os.environ.get("TORCHELASTIC_RUN_ID", "?"), file=fh)
raise ValueError("the student's own error")
'''


@pytest.mark.slow
def test_a_worker_killed_by_a_signal_is_launched_once_more(tmp_path):
    """A SIGABRT in a worker is the launcher's failure, retried; the code's own error is not."""
    script = tmp_path / "aborts.py"
    script.write_text(_ABORTS_ONCE)
    lines = distributed.run_torchrun([str(script), str(tmp_path)], nproc=2, timeout=120, echo=False)
    # Counted in the whole text: the workers run unbuffered, so print() writes its parts one by one
    # and two ranks printing at once can share a line.
    assert "\n".join(lines).count("worker ran") == 2
    failing = tmp_path / "raises.py"
    failing.write_text(_RAISES)
    with pytest.raises(distributed.LaunchError, match="the student's own error"):
        distributed.run_torchrun([str(failing), str(tmp_path)], nproc=2, timeout=120, echo=False)
    launches = set((tmp_path / "runs").read_text().split())
    assert len(launches) == 1, "the code's own error is not launched again"


_ABORTS_ONCE_BESIDE_AN_ERROR = '''
import os, signal, sys, time
marker = os.path.join(sys.argv[1], "aborted")
if not os.path.exists(marker):
    if os.environ["RANK"] == "0":
        time.sleep(1.0)
        open(marker, "w").close()
        os.abort()
    def fail(*_):  # rank 1 ends with an error of its own, as on a peer's closed connection
        raise RuntimeError("Connection reset by peer")
    signal.signal(signal.SIGTERM, fail)
    time.sleep(60)
print("worker ran", os.environ["RANK"], flush=True)
'''


@pytest.mark.slow
def test_a_signal_beside_another_ranks_error_is_launched_once_more(tmp_path):
    """torchrun lists rank 0's SIGABRT and rank 1's error (exit code 1): the signal decides."""
    script = tmp_path / "aborts.py"
    script.write_text(_ABORTS_ONCE_BESIDE_AN_ERROR)
    lines = distributed.run_torchrun([str(script), str(tmp_path)], nproc=2, timeout=120, echo=False)
    # Counted in the whole text: the workers run unbuffered, so print() writes its parts one by one
    # and two ranks printing at once can share a line.
    assert "\n".join(lines).count("worker ran") == 2


_A_REAL_STEP = """
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
"""

_ABORTS_ONCE_IN_A_STEP = """
def train_step(model, optimizer, x, y):
    import os
    marker = os.path.join(MARKER_DIR, "aborted")
    if dist.get_rank() == 0 and not os.path.exists(marker):
        open(marker, "w").close()
        os.abort()  # SIGABRT: the launcher's kind of failure, so the launch runs once more"""
_ABORTS_ONCE_IN_A_STEP += _A_REAL_STEP


@pytest.mark.slow
def test_the_launch_server_stops_hung_and_exiting_workers_and_retries_a_signal(tmp_path):
    """A rank that never reaches the collective is stopped at the timeout; one that exits early is
    named; one killed by a signal gets the launch run once more, as under torchrun."""
    case = [{"seed": 0, "batch": 2}]
    hangs = "def train_step(model, optimizer, x, y):\n    import time\n    time.sleep(600)\n"
    with pytest.raises(distributed.LaunchError, match="did not finish within 3 s"):
        distributed.launch("step", functions=[hangs], mode="ddp", cases=case, backend="gloo", echo=False,
                           timeout=3)
    exits = "def train_step(model, optimizer, x, y):\n    import os\n    os._exit(0)\n"
    with pytest.raises(distributed.LaunchError, match="rank 0 ended without a result"):
        distributed.launch("step", functions=[exits], mode="ddp", cases=case, backend="gloo", echo=False,
                           timeout=60)
    code = f"MARKER_DIR = {str(tmp_path)!r}\n" + _ABORTS_ONCE_IN_A_STEP
    runs = distributed.launch("step", functions=[code], mode="ddp", cases=case, backend="gloo", echo=False,
                              timeout=60)
    assert len(runs) == 2 and (tmp_path / "aborted").exists()
    assert all(isinstance(v, float) for r in runs for v in r["cases"][0]["losses"])


_ERRS_THEN_ABORTS_ONCE = """
def train_step(model, optimizer, x, y):
    import os, time
    marker = os.path.join(MARKER_DIR, f"failed-{dist.get_rank()}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        if dist.get_rank() == 0:
            time.sleep(0.5)
            os.abort()  # the cause, seen after the error it brings about on the other rank
        raise RuntimeError("Connection reset by peer")"""
_ERRS_THEN_ABORTS_ONCE += _A_REAL_STEP


@pytest.mark.slow
def test_a_signal_decides_even_when_another_ranks_error_ends_first(tmp_path):
    """The race CI met: rank 0 dies of SIGABRT, rank 1 fails on the closed connection and exits first.
    The signal is the launcher's failure, so the launch runs once more; its second run has fresh files."""
    code = f"MARKER_DIR = {str(tmp_path)!r}\n" + _ERRS_THEN_ABORTS_ONCE
    runs = distributed.launch("step", functions=[code], mode="ddp", cases=[{"seed": 0, "batch": 2}],
                              backend="gloo", echo=False, timeout=60)
    assert len(runs) == 2 and {p.name for p in tmp_path.iterdir()} == {"failed-0", "failed-1"}


def test_a_signal_on_the_second_run_too_is_named_before_the_errors_it_caused(tmp_path):
    always = _ERRS_THEN_ABORTS_ONCE.replace("if not os.path.exists(marker):", "if True:")
    code = f"MARKER_DIR = {str(tmp_path)!r}\n" + always
    with pytest.raises(distributed.LaunchError, match=r"(?s)rank 0 was killed by SIGABRT, twice.*rank 1.*reset"):
        distributed.launch("step", functions=[code], mode="ddp", cases=[{"seed": 0, "batch": 2}],
                           backend="gloo", echo=False, timeout=60)
