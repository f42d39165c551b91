"""qklab.plotting: figures fit a phone (width capped, no text under MIN_FONT_PT) and are SVG with text."""

import re

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

from qklab.plotting import MAX_WIDTH_IN, MIN_FONT_PT, use_book_style  # noqa: E402


def test_wide_figure_is_capped_and_small_text_raised(tmp_path):
    use_book_style()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    axes[0].plot([1, 2], [3, 4], label="a")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks([0, 1], ["x", "y"], fontsize=9)
    axes[1].text(0.5, 0.5, "note", fontsize=7)
    assert tuple(fig.get_size_inches()) == (MAX_WIDTH_IN, 3.2 * MAX_WIDTH_IN / 6.4)
    fig.savefig(tmp_path / "f.svg")
    plt.close(fig)
    svg = (tmp_path / "f.svg").read_text()
    sizes = [float(s) for s in re.findall(r"font-size: ([\d.]+)px", svg)]
    assert sizes and min(sizes) >= MIN_FONT_PT, sorted(set(sizes))
    assert "<text" in svg  # text kept as text (svg.fonttype none): the browser tests measure it


def test_long_titles_wrap_inside_the_figure():
    import matplotlib as mpl

    mpl.use("agg", force=True)
    use_book_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.set_title("a title far longer than a figure four and a half inches wide can hold on one line at 11 pt")
    fig.canvas.draw()
    box = ax.title.get_window_extent(fig.canvas.get_renderer())
    plt.close(fig)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width + 1, (box.x0, box.x1, fig.bbox.width)
