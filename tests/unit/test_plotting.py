"""utils.plotting: the shared plots draw what they say on the axes they are given, and refuse mismatched data."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # before pyplot: no window in CI

import matplotlib.pyplot as plt
import pytest

from utils.plotting import plot_before_after, plot_loss_curve


def test_loss_curve_plots_steps_against_losses_on_the_given_axes():
    _, ax = plt.subplots()
    assert plot_loss_curve([1, 2, 3], [2.0, 1.5, 1.2], ax=ax, label="run A") is ax
    [line] = ax.get_lines()
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [2.0, 1.5, 1.2]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("step", "training loss", "Training loss")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run A"]


def test_a_second_call_overlays_a_run_and_long_runs_drop_the_markers():
    ax = plot_loss_curve(range(5), [1, 1, 1, 1, 1], label="short")
    plot_loss_curve(range(100), [0.5] * 100, ax=ax, label="long")
    short, long = ax.get_lines()
    assert short.get_marker() == "o" and long.get_marker() in (None, "None", "")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["short", "long"]


def test_without_a_label_there_is_no_legend_and_title_can_be_dropped():
    ax = plot_loss_curve([0, 1], [3.0, 2.0], title=None)
    assert ax.get_legend() is None and ax.get_title() == ""


def test_mismatched_lengths_are_refused_with_both_counts():
    with pytest.raises(ValueError, match="3 steps but 2 losses"):
        plot_loss_curve([1, 2, 3], [1.0, 0.5])


def test_before_after_draws_both_metrics_of_both_results_labelled_as_percentages():
    before = SimpleNamespace(fact_accuracy=0.25, format_validity=0.5)
    after = SimpleNamespace(fact_accuracy=0.75, format_validity=1.0)
    _, ax = plt.subplots()
    assert plot_before_after(before, after, ax=ax) is ax
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [0.25, 0.5, 0.75, 1.0]  # before's fact and format, then after's
    labels = [text.get_text() for text in ax.texts]
    assert labels == ["25%", "50%", "75%", "100%"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fact accuracy", "format validity"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before", "after"]
    assert ax.get_ylim()[1] > 1.0  # room above a 100% bar for its label
