"""The HTML back-test report: one self-contained, escaped page whose plots really render."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest

from models.calendar import BusinessCalendar
from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from training.backtest import COMPANY, BacktestReport, run_backtest
from training.data import OrderTable
from training.report import render_html
from training.spec import Spec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def report(
    sample_spec: Spec, sample_table: OrderTable, sample_calendar: BusinessCalendar
) -> BacktestReport:
    """A two-fold back-test of the sample with the conformal trade-off swept (a few seconds)."""
    return run_backtest(
        sample_spec,
        sample_table,
        sample_calendar,
        ["conformal", "adaptive"],
        folds=2,
        tradeoff=["conformal"],
    )


def test_the_page_is_self_contained_with_every_plot(report: BacktestReport) -> None:
    page = render_html(report)
    images = IMAGE.findall(page)
    # Trade-off, per segment, over time, earliness, censoring and drift.
    assert len(images) == 5
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
    # Nothing is fetched: no external script, style sheet or image.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page
    conformal = report.policies["conformal"].overall
    assert report.company_promise is not None
    company = report.company_promise.overall
    assert conformal.late_rate is not None and company.late_rate is not None
    assert f"{100 * conformal.late_rate:.1f}%" in page
    assert f"{100 * company.late_rate:.1f}%" in page
    assert "Company promise today" in page


def test_every_text_from_the_data_is_escaped(report: BacktestReport) -> None:
    hostile = dataclasses.replace(
        report,
        dataset=dataclasses.replace(
            report.dataset, path="/data/<script>alert('path')</script>.csv"
        ),
        spec=dataclasses.replace(report.spec, source="specs/a&b.toml"),
        policies={**report.policies, "<b>bold</b>": report.policies["adaptive"]},
    )
    page = render_html(hostile)
    assert "<script>alert" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#39;path&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "specs/a&amp;b.toml" in page


def test_a_report_without_company_promise_or_segments_still_renders(report: BacktestReport) -> None:
    counts = {k: v for k, v in report.earliness.counts.items() if k != COMPANY}
    bare = dataclasses.replace(
        report,
        company_promise=None,
        comparison=dataclasses.replace(report.comparison, company_promise=None),
        earliness=dataclasses.replace(report.earliness, counts=counts),
        policies={
            name: dataclasses.replace(figures, by_segment={})
            for name, figures in report.policies.items()
        },
    )
    page = render_html(bare)
    assert len(IMAGE.findall(page)) == 4  # no per-segment plot
    assert "Company promise today" not in page


@needs_chromium
def test_the_plots_render_in_a_real_browser(report: BacktestReport, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(report), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri(), wait_until="load")
            sizes = page.eval_on_selector_all(
                "img", "images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            title = page.title()
        finally:
            browser.close()
    assert len(sizes) == 5
    assert all(complete and width > 0 and height > 0 for complete, width, height in sizes), sizes
    assert "Back-test" in title
