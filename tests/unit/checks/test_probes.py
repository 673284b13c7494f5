"""The probes and stand-ins of ``course_utils.checks.probes``: what each records, and the library's signatures."""

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import checks
from course_utils.checks import probes


def _parameters(signature):
    """(name, kind, default) of every parameter: what a caller can pass, by position or keyword."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_recording_mse_notes_the_rate_and_the_loss_of_every_call():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = checks.RecordingMSE(optimizer)
    x, y = torch.ones(3, 2), torch.zeros(3, 1)
    loss = loss_fn(model(x), y)
    assert torch.allclose(loss, F.mse_loss(model(x), y))
    optimizer.param_groups[0]["lr"] = 0.25
    loss_fn(input=model(x), target=y)
    assert [lr for lr, _ in loss_fn.calls] == [0.5, 0.25]
    assert loss_fn.calls[0][1] == pytest.approx(loss.item())
    assert isinstance(loss_fn, nn.MSELoss)


def test_recording_mse_keeps_mse_loss_forward_signature():
    assert _parameters(inspect.signature(checks.RecordingMSE.forward)) == \
        _parameters(inspect.signature(nn.MSELoss.forward))


def test_counting_linear_reports_depths_in_turn_and_is_a_linear_layer():
    layer = checks.CountingLinear(3, 2)
    assert layer.last_depth is None and layer.calls == 0
    x = torch.randn(4, 3)
    depths = []
    for _ in range(6):
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
        depths.append(layer.last_depth)
    assert depths == [0, 1, 2, 3, 0, 1] and layer.calls == 6
    layer(x, depth=3)  # DynamicNet's signature; the depth asked for is ignored
    assert layer.last_depth == 2
    assert checks.CountingLinear(3, 2, cycle=2)(x).shape == (4, 2)


def test_recording_writer_records_tag_value_step():
    writer = checks.RecordingWriter()
    writer.add_scalar("loss/train", 0.5, 3)
    writer.add_scalar(tag="loss/val", scalar_value=0.25, global_step=4, walltime=1.0, new_style=True,
                      double_precision=True)
    writer.add_scalar("lr", 0.1)
    writer.add_scalars("acc", {"train": 0.9, "val": 0.8}, global_step=5, walltime=2.0)
    writer.flush()
    writer.close()
    assert writer.calls == [("loss/train", 0.5, 3), ("loss/val", 0.25, 4), ("lr", 0.1, None),
                            ("acc/train", 0.9, 5), ("acc/val", 0.8, 5)]


@pytest.mark.parametrize("method", ["add_scalar", "add_scalars", "flush", "close"])
def test_recording_writer_has_summary_writer_signatures(method):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    real = inspect.signature(getattr(tensorboard.SummaryWriter, method))
    stand_in = inspect.signature(getattr(checks.RecordingWriter, method))
    assert _parameters(stand_in) == _parameters(real)


def test_probe_model_predicts_the_first_feature_in_eval_mode_and_records_autograd():
    probe = checks.ProbeModel(num_classes=3)
    x = torch.tensor([[0.0], [2.0], [1.0]])
    probe.eval()
    with torch.no_grad():
        assert probe(x).argmax(1).tolist() == [0, 2, 1]
    probe.train()
    assert probe(x).argmax(1).tolist() == [1, 0, 2]  # the next class in training mode
    assert probe.grad_enabled == [False, True]
    assert [name for name, _ in probe.named_parameters()] == ["scale"]


def test_probe_batches_split_guesses_and_labels():
    batches = checks.probe_batches([0, 1, 2, 0, 1], [0, 1, 1, 2, 1], [3, 2])
    assert [tuple(x.shape) for x, _ in batches] == [(3, 1), (2, 1)]
    assert [y.tolist() for _, y in batches] == [[0, 1, 1], [2, 1]]
    probe = checks.ProbeModel().eval()
    with torch.no_grad():
        assert [probe(x).argmax(1).tolist() for x, _ in batches] == [[0, 1, 2], [0, 1]]


def test_mode_recorder_records_batch_size_mode_and_autograd():
    net = nn.Linear(5, 2)
    recorder = checks.ModeRecorder(net)
    x = torch.randn(4, 5)
    assert torch.equal(recorder(x), net(x))
    recorder.eval()
    with torch.no_grad():
        recorder(x[:2])
    assert recorder.calls == [(4, True, True), (2, False, False)]
    assert [name for name, _ in recorder.named_parameters()] == ["net.weight", "net.bias"]


def test_grad_on_copy_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    model.weight.grad = torch.full_like(model.weight, 7.0)  # a leftover gradient stays as it is
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, grad = checks.grad_on_copy(model, F.mse_loss, x, y)
    expected_w = model.weight.detach().clone().requires_grad_()
    expected_loss = F.mse_loss(x @ expected_w.T + model.bias.detach(), y)
    expected_loss.backward()
    assert loss == pytest.approx(expected_loss.item()) and isinstance(loss, float)
    assert torch.allclose(grad, expected_w.grad)
    assert torch.equal(model.weight.grad, torch.full_like(model.weight, 7.0))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    bias = checks.grad_on_copy(model, F.mse_loss, x, y, name="bias")
    assert bias.grad.shape == (2,) and bias.loss == pytest.approx(loss)


def test_parameter_copies_are_detached_copies_by_name():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    copies = checks.parameter_copies(model)
    assert list(copies) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(not t.requires_grad for t in copies.values())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(copies["0.weight"], model[0].weight)


def test_with_new_parameter_objects_replaces_parameters_on_conversion_and_restores_the_flag():
    flag = torch.__future__.get_overwrite_module_params_on_conversion()
    model = nn.Linear(2, 2)
    old = model.weight
    assert checks.with_new_parameter_objects(model.to, torch.float64) is model
    assert model.weight is not old and model.weight.dtype == torch.float64
    assert torch.__future__.get_overwrite_module_params_on_conversion() == flag

    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        checks.with_new_parameter_objects(fails)
    assert torch.__future__.get_overwrite_module_params_on_conversion() == flag


def test_the_probes_run_in_the_kernel_by_name():
    """run_in_kernel calls a function or class of the course by name: in a notebook, a plain call."""
    model = nn.Linear(2, 1)
    assert set(checks.run_in_kernel(checks.parameter_copies, model)) == {"weight", "bias"}
    assert isinstance(checks.run_in_kernel(checks.ProbeModel), checks.ProbeModel)


def test_the_grader_guard_protects_the_module():
    """The course's nbgrader_config.py protects course_utils.checks.* by prefix: the probes too."""
    from course_utils.grader.config import CourseGrade, course_protection, load_config
    from course_utils.release import project_root

    protection = course_protection(CourseGrade(config=load_config(project_root())))
    assert protection.is_course_module("course_utils.checks.probes")
    assert "course_utils.checks.probes" in protection.course_modules()
    assert set(probes.__all__) <= set(checks.__all__)
