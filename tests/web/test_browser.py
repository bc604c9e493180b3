"""The page in a real headless Chromium: change controls, see the plots change.

Starts ``python -m hamopt demo`` on 127.0.0.1 at a free port with a small results directory,
drives the page with Playwright (the system Chromium, no downloaded browser), and checks that
the plots redraw with the new values, that a busy indicator shows during every recompute, that
bad input shows a message, marks the box and keeps the last plot, that a diverging run is drawn
as diverged, that the results browser refuses a path outside ``--results``, and that neither the
page's tabs nor a sweep's ``report.html`` scroll sideways at 1440 or 390 px.

Redraw latency of a 300-step run, median over seven step-size edits, printed (``pytest -s``) and
saved next to the screenshot in the test's temp directory, two ways: in the page, from the
box's ``input`` event to the moment the redrawn trajectory title is in the DOM (what a person
waits for; the trajectory is drawn first) and to the moment all three plots are redrawn, and in
the harness, from before Playwright types to the moment it sees the title (adds the
browser automation's own round trips). The target is an in-page median ≤ 0.5 s on an idle
machine, asserted with ``HAMOPT_STRICT_LATENCY=1``; otherwise only a sanity bound (5 s) is
asserted, so the suite's verdict does not depend on the machine's load.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import in_ci
from .resultsdir import write_results_dir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser

if not os.path.exists(CHROMIUM) and not in_ci():
    pytest.skip(
        f"{CHROMIUM} is absent (install Debian's chromium); required under CI",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hamopt demo exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(
        f"hamopt demo did not answer on {url} within {timeout:.0f} s:\n{log.read_text()}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    results = write_results_dir(base / "results", steps=40)
    port = _free_port()
    log = base / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hamopt",
                "demo",
                "--port",
                str(port),
                "--results",
                str(results),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser_page(server, tmp_path_factory):
    sync_api = (
        pytest.importorskip("playwright.sync_api")
        if not in_ci()
        else __import__("playwright.sync_api", fromlist=["sync_playwright"])
    )
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(server)
        # the first visit runs every tab's initial computation at once: slow on a loaded machine
        page.wait_for_selector("#pg-contour .js-plotly-plot .gtitle", timeout=120_000)
        yield page
        ctx.close()


def _title(page, plot: str) -> str:
    return page.evaluate(f"document.querySelector('#{plot} .gtitle')?.textContent ?? ''")


def _trace_x(page, plot: str, index: int) -> list[float]:
    """x values of trace ``index`` as plotly.js drew them (arrays arrive as typed binary blocks)."""
    return page.evaluate(
        f"Array.from(document.querySelector('#{plot} .js-plotly-plot')._fullData[{index}].x)"
    )


def _path_x(page) -> list[float]:
    return _trace_x(page, "pg-contour", 0)


def _set_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(value)
    box.press("Tab")


def _wait_title(page, plot: str, needle: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        f"(document.querySelector('#{plot} .gtitle')?.textContent ?? '')"
        f".includes({json.dumps(needle)})",
        timeout=timeout,
    )


# Gradio's status tracker inside an output while its request is pending (show_progress="minimal")
BUSY = ".wrap:not(.hide) .progress-text, .wrap.minimal:not(.hide)"
TARGET_MEDIAN_S = 0.5


# A redraw slower than this is broken (a remount, a lost in-place update), not merely slow.
SANITY_MEDIAN_S = 5.0


def latency_bound() -> float:
    """The asserted bound on the in-page median. By default a sanity bound
    (:data:`SANITY_MEDIAN_S`): the suite measures and prints the latency but does not make a
    timing target pass or fail with the machine's load. ``HAMOPT_STRICT_LATENCY=1`` asserts the
    target :data:`TARGET_MEDIAN_S` (run it on an idle machine)."""
    if os.environ.get("HAMOPT_STRICT_LATENCY") == "1":
        return TARGET_MEDIAN_S
    return SANITY_MEDIAN_S


PLAYGROUND_PLOTS = ("pg-contour", "pg-energy", "pg-delta")


def _time_in_page(page, box: str, plot: str, needle: str) -> None:
    """From now, ``window.__lat`` gets ``t0`` at the next ``input`` event of ``box``, ``t1``
    when the title of ``plot`` first contains ``needle``, and ``all`` when, in addition, every
    playground plot has drawn new data (plotly.js gives a chart a new ``data`` array on each
    ``Plotly.react``) (performance.now(), ms)."""
    page.evaluate(
        f"""(() => {{
        const lat = window.__lat = {{}};
        document.querySelector('#{box} input').addEventListener(
            'input', () => {{ lat.t0 ??= performance.now(); }}, {{once: true}});
        const root = document.querySelector('#{plot}');
        const charts = {json.dumps(PLAYGROUND_PLOTS)}.map((id) => document.querySelector(`#${{id}} .js-plotly-plot`));
        const before = charts.map((chart) => chart?.data);
        const look = () => {{
            if (lat.t0 === undefined) return;
            const title = root.querySelector('.gtitle')?.textContent ?? '';
            if (lat.t1 === undefined && title.includes({json.dumps(needle)})) lat.t1 = performance.now();
            if (lat.t1 !== undefined && charts.every((chart, i) => chart?.data !== before[i])) {{
                lat.all = performance.now(); window.__latObserver.disconnect(); }}
        }};
        window.__latObserver?.disconnect();
        window.__latObserver = new MutationObserver(look);
        window.__latObserver.observe(document.body,
            {{subtree: true, childList: true, characterData: true, attributes: true}});
        }})()"""
    )


def _watch_busy(page, plot: str) -> None:
    """Record in ``window.__busy`` whether ``plot`` shows its busy indicator from now on."""
    page.evaluate(
        f"""(() => {{
        window.__busy = false;
        const root = document.querySelector('#{plot}');
        const look = () => {{ if (root.querySelector({json.dumps(BUSY)})) window.__busy = true; }};
        window.__busyObserver?.disconnect();
        window.__busyObserver = new MutationObserver(look);
        window.__busyObserver.observe(root, {{subtree: true, childList: true, attributes: true}});
        look();
        }})()"""
    )


def _server_ms(page) -> float:
    """The run time the status line reports ("300 steps in 412 ms")."""
    text = page.locator("#pg-status").inner_text()
    return float(text.split(" steps in ")[1].split(" ms")[0])


def test_playground_redraws_on_change(browser_page, tmp_path):
    page = browser_page
    assert "Leapfrog" in _title(page, "pg-contour") and "dt=0.05" in _title(page, "pg-contour")
    before = _path_x(page)
    assert len(before) == 301

    timings, in_page, in_page_all, server = [], [], [], []
    for dt in ("0.08", "0.03", "0.06", "0.045", "0.07", "0.055", "0.035"):
        _watch_busy(page, "pg-contour")
        _time_in_page(page, "pg-step-size", "pg-contour", f"dt={dt},")
        t0 = time.perf_counter()
        _set_number(page, "pg-step-size", dt)
        _wait_title(page, "pg-contour", f"dt={dt},")
        timings.append(time.perf_counter() - t0)
        page.wait_for_function("window.__lat.all !== undefined")
        in_page.append(page.evaluate("(window.__lat.t1 - window.__lat.t0) / 1000"))
        in_page_all.append(page.evaluate("(window.__lat.all - window.__lat.t0) / 1000"))
        assert page.evaluate("window.__busy"), f"no busy indicator while redrawing dt={dt}"
        status = page.locator("#pg-status").inner_text()
        assert f"dt = {dt}" in status
        server.append(_server_ms(page) / 1000)
    after = _path_x(page)
    assert after != before and len(after) == 301

    t0 = time.perf_counter()
    _set_number(page, "pg-steps", "50")
    _wait_title(page, "pg-contour", "50 steps")
    timings.append(time.perf_counter() - t0)
    assert len(_path_x(page)) == 51
    # the energy and |ΔH| plots are drawn a frame after the trajectory
    page.wait_for_function("document.querySelector('#pg-energy .js-plotly-plot')._fullData[0].x.length === 51")
    assert len(_trace_x(page, "pg-energy", 0)) == 51

    # landscape from the dropdown: suggested step size and start follow, plots redraw
    page.locator("#pg-landscape input").click()
    option = page.get_by_role("option", name="double well")
    option.wait_for()
    t0 = time.perf_counter()
    option.click()
    _wait_title(page, "pg-contour", "double well")
    timings.append(time.perf_counter() - t0)
    page.wait_for_function("document.querySelector('#pg-x0 input').value === '-1.6'")

    step_timings = timings[:7]  # the 300-step runs (step-size changes)
    median = statistics.median(in_page)
    bound = latency_bound()
    report = {
        "in_page_seconds_300_steps": [round(t, 3) for t in in_page],
        "median_in_page_300_steps": round(median, 3),
        "in_page_all_plots_seconds_300_steps": [round(t, 3) for t in in_page_all],
        "median_in_page_all_plots_300_steps": round(statistics.median(in_page_all), 3),
        "harness_seconds": [round(t, 3) for t in timings],
        "median_harness_300_steps": round(statistics.median(step_timings), 3),
        "server_run_seconds_300_steps": [round(t, 3) for t in server],
        "target_median_s": TARGET_MEDIAN_S,
        "target_met": median <= TARGET_MEDIAN_S,
        "bound_at_this_load_s": round(bound, 3),
        "load_average": os.getloadavg()[0],
        "cores": os.cpu_count(),
    }
    (tmp_path / "timings.json").write_text(json.dumps(report, indent=2))
    print(
        f"\nredraw after a control change (300 steps): median {median:.3f} s in the page "
        f"(all three plots: {report['median_in_page_all_plots_300_steps']:.3f} s), "
        f"{report['median_harness_300_steps']:.3f} s in the harness (target ≤ {TARGET_MEDIAN_S} s: "
        f"{'met' if median <= TARGET_MEDIAN_S else 'NOT met'} at load {report['load_average']:.1f} on "
        f"{report['cores']} cores; the run itself took median {statistics.median(server):.3f} s of it); "
        f"all: {report}"
    )
    assert median <= bound, f"redraw median {median:.3f} s > {bound:.3f} s: {report}"
    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert (tmp_path / "playground.png").stat().st_size > 10_000


def test_bad_input_and_divergence_are_visible(browser_page, tmp_path):
    page = browser_page
    page.locator("#pg-landscape input").click()
    page.get_by_role("option", name="anisotropic quadratic").click()
    _wait_title(page, "pg-contour", "anisotropic quadratic")
    drawn = _title(page, "pg-contour")
    _set_number(page, "pg-step-size", "1e9")
    page.wait_for_function(
        "document.querySelector('#pg-status').innerText.includes('Invalid input')"
    )
    message = page.locator("#pg-status").inner_text()
    assert "dt / lr (step size): must be finite and in (0, 10], got 1e9" in message, message
    # the last plot stays, the offending box is marked
    assert _title(page, "pg-contour") == drawn
    page.wait_for_selector("#pg-step-size.hamopt-invalid")
    assert page.locator("#pg-steps.hamopt-invalid").count() == 0
    _set_number(page, "pg-step-size", "0.05")
    _wait_title(page, "pg-contour", "dt=0.05")
    page.wait_for_function("!document.querySelector('#pg-step-size.hamopt-invalid')")
    _set_number(page, "pg-steps", "99999")
    page.wait_for_function(
        "document.querySelector('#pg-status').innerText.includes('steps: must be')"
    )
    _set_number(page, "pg-steps", "400")
    _set_number(page, "pg-step-size", "2")
    _wait_title(page, "pg-contour", "DIVERGED")
    assert "Diverged at step" in page.locator("#pg-status").inner_text()
    _set_number(page, "pg-step-size", "0.05")
    _wait_title(page, "pg-contour", "dt=0.05, 400 steps")
    page.screenshot(path=str(tmp_path / "recovered.png"), full_page=True)


def test_drift_scan_button(browser_page):
    page = browser_page
    page.locator("#pg-scan").click()
    page.wait_for_function(
        "document.querySelector('#pg-scan-status').innerText.includes('95 % CI')", timeout=30_000
    )
    assert "slope" in page.locator("#pg-scan-status").inner_text()
    _wait_title(page, "pg-scan-plot", "drift vs dt")


def test_reversibility_tab(browser_page):
    page = browser_page
    page.get_by_role("tab", name="Reversibility").click()
    page.wait_for_selector("#rv-plot .js-plotly-plot")
    text = page.locator("#rv-status").inner_text()
    assert "Leapfrog" in text and "Euler" in text
    _watch_busy(page, "rv-plot")
    _set_number(page, "rv-steps", "60")
    page.wait_for_function(
        "document.querySelector('#rv-status').innerText.includes('60 steps forward')"
    )
    assert page.evaluate("window.__busy"), "no busy indicator while the round trips ran"


def test_results_tab_and_path_guard(browser_page, tmp_path):
    page = browser_page
    page.get_by_role("tab", name="Results").click()
    page.wait_for_function("document.querySelector('#rs-status')?.innerText.includes('6 runs')")
    page.wait_for_selector("#rs-drift .js-plotly-plot")
    assert "slope" in page.evaluate(
        "document.querySelector('#rs-drift .js-plotly-plot').data.map(t => t.name).join(' ')"
    )
    page.wait_for_selector("#rs-run-plot .js-plotly-plot")
    box = page.locator("#rs-path textarea, #rs-path input").first
    box.fill("../..")
    box.press("Enter")
    page.wait_for_function("document.querySelector('#rs-status').innerText.includes('refused')")
    page.screenshot(path=str(tmp_path / "results.png"), full_page=True)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """``report.html`` of a tiny real sweep (every section and figure present)."""
    from hamopt.experiments.runner import run_sweep
    from hamopt.report import write_report
    from tests.experiments.tiny import tiny_spec

    out = tmp_path_factory.mktemp("report") / "sweep"
    run_sweep(tiny_spec(), out, progress=False, log=lambda s: None)
    return write_report(out).html


def _overflow(page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


@pytest.mark.parametrize(("width", "height"), [(1440, 900), (390, 844)])
def test_no_horizontal_overflow(browser_page, server, report_page, width, height, tmp_path):
    # a fresh visit at the device's width, as a phone or a desktop would open the page
    page = browser_page.context.new_page()
    page.set_default_timeout(60_000)
    page.set_viewport_size({"width": width, "height": height})
    try:
        page.goto(server)
        page.wait_for_selector("#pg-contour .js-plotly-plot .gtitle", timeout=120_000)
        for tab, plot in (("Playground", "pg-contour"), ("Reversibility", "rv-plot"), ("Results", "rs-drift")):
            page.get_by_role("tab", name=tab).click()
            page.wait_for_selector(f"#{plot} .js-plotly-plot")
            page.wait_for_timeout(300)
            assert _overflow(page) <= 0, f"{tab} tab is {_overflow(page)} px too wide at {width} px"
            # every plot fits its box: nothing drawn beyond the right edge of the window
            widest = page.evaluate(
                "Math.max(0, ...[...document.querySelectorAll('.js-plotly-plot .main-svg')]"
                ".filter(e => e.getBoundingClientRect().width > 0)"
                ".map(e => e.getBoundingClientRect().right))"
            )
            assert widest <= width, f"a plot on the {tab} tab reaches {widest:.0f} px at {width} px"
            page.screenshot(path=str(tmp_path / f"{tab.lower()}-{width}.png"), full_page=True)
        page.goto(report_page.as_uri())
        assert page.locator("meta[name=viewport]").count() == 1
        assert page.evaluate("document.querySelector('h2').textContent") == "Summary"
        assert _overflow(page) <= 0, f"report.html is {_overflow(page)} px too wide at {width} px"
        page.screenshot(path=str(tmp_path / f"report-{width}.png"))
    finally:
        page.close()
