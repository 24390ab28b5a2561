"""The inline SVG charts: well-formed, accessible, and their marks carry the figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bulkmail.reports.svg import Series, donut, nice_ceiling, stacked_columns, stacked_rows

NS = {"s": "http://www.w3.org/2000/svg"}
SENT, BOUNCED = Series("sent", "#080"), Series("bounced", "#c00")


def marks(svg: str) -> list[tuple[str, int]]:
    root = ET.fromstring(svg)
    return [
        (e.get("data-series", ""), int(e.get("data-value", "0")))
        for e in root.iter()
        if e.get("data-series")
    ]


def test_a_chart_has_a_title_and_description_for_screen_readers() -> None:
    svg = stacked_columns("c1", "Over time", "Sent per minute", ["0s", "1s"], [SENT], [[3], [4]])
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-t c1-d"
    assert root.find("s:title", NS).text == "Over time"  # type: ignore[union-attr]
    assert root.find("s:desc", NS).text == "Sent per minute"  # type: ignore[union-attr]


def test_stacked_columns_draw_one_mark_per_nonzero_value_with_its_number() -> None:
    svg = stacked_columns("c", "t", "d", ["a", "b", "c"], [SENT, BOUNCED], [[5, 1], [0, 2], [0, 0]])
    assert marks(svg) == [("sent", 5), ("bounced", 1), ("bounced", 2)]


def test_taller_stacks_draw_taller_columns() -> None:
    root = ET.fromstring(stacked_columns("c", "t", "d", ["a", "b"], [SENT], [[2], [8]]))
    heights = [float(e.get("height", 0)) for e in root.iter() if e.get("class") == "bar"]
    assert heights[1] == 4 * heights[0]


def test_stacked_rows_label_each_row_and_write_its_total() -> None:
    svg = stacked_rows("r", "t", "d", ["a.test", "b.test"], [SENT, BOUNCED], [[10, 0], [0, 3]])
    root = ET.fromstring(svg)
    texts = [e.text for e in root.iter() if e.get("class") in ("label", "total")]
    assert texts == ["a.test", "10", "b.test", "3"]
    assert marks(svg) == [("sent", 10), ("bounced", 3)]


def test_donut_slices_split_the_ring_in_proportion() -> None:
    svg = donut(
        "d", "Bounces", "by category", [(Series("hard", "#c00"), 3), (Series("policy", "#f80"), 1)]
    )
    root = ET.fromstring(svg)
    slices = [e for e in root.iter() if e.get("class") == "slice"]
    lengths = [float(e.get("stroke-dasharray", "0 0").split()[0]) for e in slices]
    assert abs(lengths[0] - 3 * lengths[1]) < 0.01
    assert marks(svg) == [("hard", 3), ("policy", 1)]
    labels = [e.text for e in root.iter() if e.get("class") == "label"]
    assert labels == ["hard: 3 (75%)", "policy: 1 (25%)"]


def test_empty_charts_say_so_instead_of_failing() -> None:
    for svg in (
        stacked_columns("a", "t", "d", [], [SENT], []),
        stacked_rows("b", "t", "d", [], [SENT], []),
        donut("c", "t", "d", []),
    ):
        root = ET.fromstring(svg)
        assert marks(svg) == []
        assert any(e.text in ("no data", "none") for e in root.iter())


def test_text_is_escaped() -> None:
    svg = stacked_rows("r", "<b>", "a & b", ["<script>"], [SENT], [[1]])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)


def test_axis_tops_are_round_numbers() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 12, 180, 2400)] == [1, 1, 5, 10, 20, 200, 2500]
