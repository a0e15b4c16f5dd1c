import dataclasses
import json
import math

import numpy as np
import pytest

from jaxdd import report

NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    *(f"class {c}" for c in range(5, 10)),
]


def _strict(text: str):
    """Parses `text` as strict JSON: NaN and Infinity literals are an error."""

    def refuse(literal):
        raise ValueError(f"non-strict JSON literal {literal}")

    return json.loads(text, parse_constant=refuse)


def test_run_dirs_are_unique_and_log_jsonl(tmp_path):
    a = report.RunDir(tmp_path, "x")
    b = report.RunDir(tmp_path, "x")
    assert a.path != b.path
    a.log(event="eval", acc=np.float32(0.5), arr=np.arange(2))
    a.log(event="done")
    lines = (a.path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"event": "eval", "acc": 0.5, "arr": [0, 1]}
    assert len(lines) == 2


@dataclasses.dataclass
class _Result:
    loss: float
    curve: np.ndarray


def test_non_finite_values_are_written_as_strict_json_and_read_back(tmp_path):
    run = report.RunDir(tmp_path, "x")
    run.log(event="eval", loss=math.inf, low=np.float32(-np.inf), acc=math.nan, arr=[1.0, np.nan])
    run.write_json("summary.json", _Result(loss=np.float64(np.inf), curve=np.array([0.5, np.nan])))
    line = (run.path / "metrics.jsonl").read_text().splitlines()[0]
    assert _strict(line) == {
        "event": "eval",
        "loss": "Infinity",
        "low": "-Infinity",
        "acc": "NaN",
        "arr": [1.0, "NaN"],
    }
    assert _strict((run.path / "summary.json").read_text()) == {
        "loss": "Infinity",
        "curve": [0.5, "NaN"],
    }
    (event,) = run.read_events()
    assert event["loss"] == math.inf and event["low"] == -math.inf
    assert math.isnan(event["acc"]) and event["arr"][0] == 1.0 and math.isnan(event["arr"][1])
    summary = run.read_json("summary.json")
    assert summary["loss"] == math.inf and math.isnan(summary["curve"][1])


def test_mean_std_and_table():
    assert report.mean_std([0.7, 0.8]) == "75.00 ± 5.00"
    table = report.format_table([{"a": 1, "b": "x"}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]


def _rows(layout: report.GridLayout, classes: np.ndarray) -> dict[int, list[int]]:
    """``{class: [images drawn on that class's lines]}``, checking each sits on its class."""
    rows: dict[int, list[int]] = {}
    for i, (line, _) in zip(layout.shown, layout.cells, strict=True):
        assert layout.line_classes[line] == classes[i]
        rows.setdefault(int(classes[i]), []).append(int(i))
    return rows


@pytest.mark.parametrize(("ipc", "columns", "lines"), [(1, 1, 1), (10, 10, 1), (50, 25, 2)])
def test_class_major_layout_draws_every_image_on_its_class_lines(ipc, columns, lines):
    classes = np.arange(10 * ipc) // ipc  # distilled sets are class-major
    layout = report.grid_layout(classes, 10)
    assert sorted(layout.shown) == list(range(10 * ipc))
    assert len({tuple(cell) for cell in layout.cells}) == 10 * ipc  # one cell each
    rows = _rows(layout, classes)
    assert {c: len(members) for c, members in rows.items()} == {c: ipc for c in range(10)}
    assert layout.columns == columns
    assert np.array_equal(layout.line_classes, np.repeat(np.arange(10), lines))
    assert layout.cells[:, 1].max() < columns


def test_wrapped_lines_are_balanced_and_big_grids_get_smaller_cells():
    layout = report.grid_layout(np.arange(300) // 30, 10)
    assert layout.columns == 15 and len(layout.line_classes) == 20
    assert layout.cell_in == 0.9
    hundred = report.grid_layout(np.arange(5000) // 50, 100)  # CIFAR-100 at IPC 50
    assert len(hundred.line_classes) == 200 and hundred.cell_in == 0.35


def test_a_sample_per_class_takes_the_first_of_each_and_keeps_empty_classes():
    classes = np.random.default_rng(0).integers(0, 3, 200)
    layout = report.grid_layout(classes, 4, per_class=10)
    rows = _rows(layout, classes)
    for c in range(3):
        assert rows[c] == list(np.flatnonzero(classes == c)[:10])
    assert 3 not in rows and list(layout.line_classes) == [0, 1, 2, 3]


def test_classes_outside_the_names_are_an_error():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        report.grid_layout(np.array([0, 2]), 2)


def test_compose_puts_each_image_in_its_cell_and_frames_the_flagged():
    n, h = 12, 7
    images = (np.arange(n, dtype=np.float64) / n)[:, None, None, None] * np.ones((n, h, h, 1))
    classes = np.arange(n) // 4
    layout = report.grid_layout(classes, 3)
    framed = np.arange(n) == 5
    mosaic = report.compose_grid(images, layout, framed, caption_px=3)
    b = report._border(h)
    line_h, cell_w = h + 4 * b + 3, h + 4 * b
    assert mosaic.shape == (3 * line_h, 4 * cell_w, 3)
    for i, (line, col) in zip(layout.shown, layout.cells, strict=True):
        y, x = line * line_h + 2 * b, col * cell_w + 2 * b
        np.testing.assert_allclose(mosaic[y : y + h, x : x + h], i / n)
        border = mosaic[y - 1, x]
        np.testing.assert_allclose(border, report._RED if framed[i] else 1.0)


def _drawn_inside(fig, artist) -> bool:
    box, page = artist.get_window_extent(), fig.bbox
    return page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1


def test_ipc_1_figure_is_wide_enough_for_its_title_and_class_names():
    title = "datm distilled set (asymmetric:0.4; red = learned label differs)"
    images = np.random.default_rng(0).random((10, 28, 28, 1))
    fig = report.draw_image_grid(images, np.arange(10), NAMES, per_class=None, title=title)
    fig.canvas.draw()
    assert fig.get_size_inches()[0] >= 5.0
    (ax,) = fig.axes
    assert fig.texts[0].get_text() == title and _drawn_inside(fig, fig.texts[0])
    names = [t for t in ax.get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in names] == NAMES
    assert all(_drawn_inside(fig, t) for t in names)


def test_learned_labels_unlike_the_row_get_a_red_frame_and_a_caption():
    classes = np.arange(20) // 2
    learned = classes.copy()
    learned[[3, 8]] = [0, 9]
    fig = report.draw_image_grid(
        np.zeros((20, 8, 8, 3)), classes, NAMES, learned_labels=learned, per_class=None
    )
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["T-shirt/top", "class 9"]
    mosaic = ax.images[0].get_array()
    frame = (8 + 2) ** 2 - 8**2  # pixels of one frame around an 8 x 8 image
    assert np.sum(np.all(mosaic == report._RED, axis=-1)) == 2 * frame


def test_image_grid_of_500_images_is_a_png_of_the_figure_size(tmp_path):
    import matplotlib.image

    images = np.random.default_rng(0).integers(0, 256, (500, 28, 28, 1), dtype=np.uint8)
    out = report.save_image_grid(
        tmp_path / "g.png", images, np.arange(500) // 50, NAMES, per_class=None, title="IPC 50"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = report.draw_image_grid(images, np.arange(500) // 50, NAMES, per_class=None)
    height, width = matplotlib.image.imread(out).shape[:2]
    assert (width, height) == tuple(np.round(fig.get_size_inches() * fig.dpi).astype(int))


def test_slug_makes_one_path_component():
    from jaxdd.report import slug

    assert slug("npz:dir/sub/f.npz") == "npz_dir_sub_f.npz"
    assert "/" not in slug("npz:/abs/path.npz") and slug("digits") == "digits"
