"""Learning-curve figures of partial results: whatever the run folders hold (no epoch, one, inf/nan, huge
perplexities, long legends), every experiment's figure is drawn, and its text is readable: checked on the
matplotlib Figure itself (tick label texts and their boxes after layout), not on pixels."""
from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib.text
import pytest

from conftest import write_run
from ptblm import runfolder as rf
from ptblm.cli import main
from ptblm.report.figures import plot_experiment
from ptblm.report.plotting import save_figure
from ptblm.report.summary import load_summaries
from runtree import write_curves, write_status

PYTHON_EXPONENT = re.compile(r"e[+-]0|e\+")  # 1e+05, 1e-07


def partial_run(root: Path, experiment: str, valid: list[float], planned: int = 3, state: str = rf.RUNNING,
                **changes) -> Path:
    """A run of `planned` epochs that has finished len(valid) of them (none: still in its first)."""
    folder = write_run(root, experiment, [100.0] * planned, **changes)
    epochs = [rf.EpochRecord(i + 1, 2 * v, v, 10.0, 10.0 * (i + 1), 1.0) for i, v in enumerate(valid)]
    write_curves(folder, rf.Curves(epochs=epochs))
    write_status(folder, rf.RunStatus(state=state, epochs_done=len(valid), num_epochs=planned))
    return folder


def visible_tick_labels(figure, axis) -> list:
    """The drawn major tick labels of one axis (x or y) inside its view, as (text, window extent)."""
    renderer = figure.canvas.get_renderer()
    low, high = sorted(axis.get_view_interval())
    labels = []
    for tick in axis.get_major_ticks():
        if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high:
            labels.append((tick.label1.get_text(), tick.label1.get_window_extent(renderer)))
    return labels


def overlapping(boxes) -> list:
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a[1].overlaps(b[1])]


def assert_readable(figure) -> None:
    """No two tick labels of an axis overlap, none is in Python's 1e+05 notation, and no panel title runs into
    the next one's."""
    figure.draw_without_rendering()
    for panel in figure.axes:
        for axis in (panel.xaxis, panel.yaxis):
            labels = visible_tick_labels(figure, axis)
            assert not overlapping(labels), [(a[0], b[0]) for a, b in overlapping(labels)]
            assert not [text for text, _ in labels if PYTHON_EXPONENT.search(text)], [t for t, _ in labels]
    renderer = figure.canvas.get_renderer()
    for left, right in zip(figure.axes[::2], figure.axes[1::2]):
        left_title, right_title = (title_box(panel, renderer) for panel in (left, right))
        assert left_title.x1 < right_title.x0, (left.get_title(loc="left"), right.get_title(loc="left"))
        assert right_title.x1 <= right.get_window_extent(renderer).x1 + 1


def title_box(panel, renderer):
    title = next(text for text in panel.findobj(matplotlib.text.Text) if text.get_text() == panel.get_title("left"))
    return title.get_window_extent(renderer)


FIRST_EPOCH = "every GRU in its first epoch"
CASES = {
    FIRST_EPOCH: lambda root: (partial_run(root, "x", [300.0, 200.0]), partial_run(root, "x", [], model="GRU"),
                               partial_run(root, "x", [], model="GRU", initial_lr=0.1)),
    "no run has an epoch": lambda root: (partial_run(root, "x", []), partial_run(root, "x", [], model="GRU")),
    "one epoch each": lambda root: (partial_run(root, "x", [300.0], hidden_size=256),  # of no published setting
                                    partial_run(root, "x", [310.0], initial_lr=0.5),
                                    partial_run(root, "x", [250.0], model="TRANSFORMER", n_heads=2)),
    "only inf and nan": lambda root: (partial_run(root, "x", [math.inf, math.nan], state=rf.DIVERGED),
                                      partial_run(root, "x", [math.nan], model="GRU", state=rf.DIVERGED)),
    "huge perplexities": lambda root: (partial_run(root, "x", [3e27, 2e5, 1.5e5], planned=3, state=rf.DONE),
                                       partial_run(root, "x", [1.2e5, 1.1e5], model="GRU")),
    "seeds without an epoch": lambda root: tuple(partial_run(root, "x", [], seed=seed) for seed in (1, 2, 3)),
    "a published setting without an epoch": lambda root: (partial_run(root, "x", [], seed=7),),
    "long legend entries": lambda root: (
        partial_run(root, "x", [300.0, 250.0], state=rf.CANCELLED, optimizer="SGD_LR_SCHEDULE", initial_lr=0.0001,
                    batch_size=1280, hidden_size=15000, num_layers=12, dp_keep_prob=0.35, seq_len=700, emb_size=6500),
        partial_run(root, "x", [320.0, 250.0], model="TRANSFORMER", n_heads=2, state=rf.CANCELLED),
        partial_run(root, "x", [400.0, 300.0], model="TRANSFORMER", n_heads=2, initial_lr=0.5, hidden_size=2048,
                    dp_keep_prob=0.9)),
}


@pytest.mark.parametrize("case", CASES)
def test_figures_of_partial_results_are_drawn_readably(case, tmp_path):
    CASES[case](tmp_path / "results")
    figure = plot_experiment(load_summaries(tmp_path / "results"))
    assert_readable(figure)
    written = save_figure(figure, tmp_path / "figure")
    assert [path.read_bytes()[:4] for path in written] == [b"%PDF", b"\x89PNG"]


def test_an_architecture_in_its_first_epoch_leaves_every_experiments_figures_drawn(tmp_path, capsys):
    """Was: "Data cannot be log-scaled because all values are <= 0", and no experiment had figures."""
    results = tmp_path / "results"
    CASES[FIRST_EPOCH](results)
    write_run(results, "done", [300.0, 250.0])
    assert main(["figures", "--results", str(results)]) == 0
    for stem in ("exp-x", "exp-done"):
        assert (results / "report" / "figures" / f"{stem}.png").stat().st_size > 1000
    figure = plot_experiment(load_summaries(results, ["x"]))
    gru_by_epoch, gru_by_time = figure.axes[2:4]
    for panel in (gru_by_epoch, gru_by_time):  # said, not blank: the runs are in the legend, the panel says why
        assert "no finished epoch" in " ".join(text.get_text() for text in panel.texts)
        assert panel.get_yscale() == "linear" and not visible_tick_labels(figure, panel.yaxis)


def test_one_epoch_is_ticked_at_that_epoch_with_two_labelled_perplexities(tmp_path):
    """Was: ticks 0.945 0.960 0.975 ... run together on the epoch axis, one perplexity label on the y axis."""
    CASES["one epoch each"](tmp_path)
    figure = plot_experiment(load_summaries(tmp_path))
    figure.draw_without_rendering()
    by_epoch, by_time = figure.axes[:2]
    assert [text for text, _ in visible_tick_labels(figure, by_epoch.xaxis)] == ["1"]
    assert by_time.get_xlim()[0] == 0.0 and by_time.get_xlim()[1] > 10.0  # 10 s, from the start of training
    low, high = by_epoch.get_ylim()
    assert low < 300.0 and high > 2 * 310.0  # train = 2 x valid
    assert len(visible_tick_labels(figure, by_epoch.yaxis)) >= 2


@pytest.mark.parametrize(("value", "text"), [(300.0, "300"), (1.5, "1.5"), (5000.0, "5000"), (1e5, "100k"),
                                             (2.5e6, "2.5M"), (3e9, "3B"), (3.5e27, "3.5e27"), (1e-7, "1e-7"),
                                             (0.02, "0.02")])
def test_tick_labels_are_plain_text(value, text):
    from ptblm.report.plotting import tick_text

    assert tick_text(value) == text


def test_a_log_axis_of_no_positive_value_has_no_limits():
    from ptblm.report.plotting import log_limits

    assert log_limits([]) is None and log_limits([0.0, -3.0]) is None


@pytest.mark.parametrize("values", [[300.0], [290.0, 310.0], [95.0, 1050.0], [1.0, 1e28], [0.7, 1.1], [1e-30, 1e-2],
                                    [-1.0, 0.0, 5.0]])
def test_log_axes_have_two_to_five_ticks_apart_inside_the_axis(values):
    from ptblm.report.plotting import log_limits, log_ticks, tick_text

    low, high = log_limits(values)
    ticks = log_ticks(low, high)
    span = math.log10(high / low)
    assert 2 <= len(ticks) <= 5 and all(low <= tick <= high for tick in ticks)
    assert min(math.log10(b / a) for a, b in zip(ticks, ticks[1:])) >= 0.12 * span
    assert len(set(map(tick_text, ticks))) == len(ticks)  # no two ticks print the same

