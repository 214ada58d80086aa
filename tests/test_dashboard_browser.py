"""End to end in a real browser: Debian's chromium, driven by Playwright, against `panel serve`
on the smoke sweep. Screenshots go to artifacts/dashboard/ (look at them)."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skimage_data

from tests.conftest import HAM
from tests.sweep_fixture import make_sweep

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "dashboard"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADDRESS = "sweep=smoke&arm=sampler"  # neither is what the app shows by default (sweep fake, the first arm)
START_TIMEOUT_S = 180  # the first page imports torch and timm: slow on a busy 2-core machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not installed: run scripts/install_browser"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: run scripts/install_browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(results_root: Path, log: Path, *serve_options: str) -> Iterator[str]:
    """`panel serve dashboards/app.py [serve_options]` on 127.0.0.1 over `results_root`; yields the app's URL."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny smoke models: one thread is faster
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", "dashboards/app.py", "--address", "127.0.0.1",
             "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}", *serve_options,
             "--args", "--results", str(results_root), "--refresh", "2"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/app"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"panel serve exited:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=START_TIMEOUT_S) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"panel serve not ready in {START_TIMEOUT_S} s:\n{log.read_text()}"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def browsing(url: str, profile: Path) -> Iterator:
    """A chromium page (Playwright) open on `url`."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True,
            args=LAUNCH_ARGS, viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url, timeout=START_TIMEOUT_S * 1000)
        yield page
        context.close()


@pytest.fixture(scope="module")
def server(smoke_sweep, tmp_path_factory):
    """The smoke sweep, and before it in the list (so the default) a fake one: the page's address picks smoke."""
    root = tmp_path_factory.mktemp("results")
    shutil.copytree(smoke_sweep, root / smoke_sweep.name)
    make_sweep(root, "fake", {"baseline": "finished", "sampler": "finished"})
    with serving(root, tmp_path_factory.mktemp("panel") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with browsing(f"{server}?{ADDRESS}", tmp_path_factory.mktemp("chromium-profile")) as page:
        yield page


def lesion_image(demo_root: Path) -> Path:
    """A real HAM10000 original when the shared material is here, else a demo image."""
    originals = sorted((HAM / "originals").glob("*.jpg"))
    return originals[0] if originals else next(demo_root.rglob("*.jpg"))


def open_tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def bokeh_plots(page, holder: str):
    """The Bokeh figures under `holder`, once the first has rendered; the holder shows no <img>."""
    figures = page.locator(f"{holder} .bk-Figure")
    figures.first.wait_for()
    assert page.locator(f"{holder} img").count() == 0
    return figures


def test_summary_table_shows_every_arm(page, smoke_sweep):
    arms = sorted(p.parent.name for p in smoke_sweep.glob("*/config.json"))
    rows = page.locator(".summary-table .tabulator-row")
    rows.nth(len(arms) - 1).wait_for()
    assert rows.count() == len(arms)
    assert sorted(row.split()[0] for row in rows.all_inner_texts()) == arms
    assert page.get_by_text("SYNTHETIC demo data.").first.is_visible()
    assert page.get_by_text("study test acc").count() == 0
    shot(page, "01_sweep")


def test_the_sweep_tab_draws_the_findings_the_report_writes(page, smoke_sweep, tmp_path):
    from core.evaluation.seeds import FIGURES
    from dashboards.report import main as report

    out = tmp_path / "report"
    assert report(["--sweep", str(smoke_sweep), "--out", str(out), "--gradcam-examples", "0"]) == 0
    found = json.loads((out / "findings.json").read_text())["findings"]
    assert found and (out / "figures" / "forest.png").is_file()
    figures = bokeh_plots(page, ".forest-plot")
    assert figures.count() == len(FIGURES)
    rows = page.locator(".findings-table .tabulator-row")
    rows.nth(len(found) - 1).wait_for()
    texts = rows.all_inner_texts()
    assert len(texts) == len(found)
    for text, entry in zip(texts, found, strict=True):  # the same comparisons, in order, with the same verdicts
        cells = [cell.strip() for cell in re.split(r"[\t\n]", text) if cell.strip()]
        assert cells[0] == f"{entry['arm']} - {entry['reference']}" and cells[-1] == entry["verdict"]
    # One training run per arm in the smoke sweep: nothing is called separated, and the page says why.
    assert {e["verdict"] for e in found} == {"one run"}
    assert page.locator(".findings-text", has_text="nothing is called separated").count() == 1
    figures.first.scroll_into_view_if_needed()
    shot(page, "findings")


def test_hovering_a_threshold_curve_reads_precision_recall_and_specificity(page, smoke_sweep):
    open_tab(page, "Melanoma threshold")
    page.wait_for_url(re.compile(r"[?&]tab=threshold"))
    figures = bokeh_plots(page, ".threshold-curves")
    assert figures.count() == len(list(smoke_sweep.glob("*/metrics.json")))  # a plot per finished arm
    frame = figures.first.locator(".bk-CartesianFrame").bounding_box()  # the plot area, t from 0 to 1
    page.mouse.move(frame["x"] + 0.05 * frame["width"], frame["y"] + 0.5 * frame["height"])  # t = 0.05
    tooltip = page.locator(".bk-tooltip-content:visible", has_text="precision")
    tooltip.wait_for()
    text = tooltip.inner_text()
    for rate in ("precision", "recall", "specificity"):
        assert re.search(rf"{rate}:\s*[01]\.\d{{3}}", text), text
    assert re.search(r"tp / fp / tn / fn:\s*\d+ / \d+ / \d+ / \d+", text), text
    shot(page, "02c_threshold_hover")
    page.mouse.move(0, 0)


def test_operating_point_table_has_three_rows(page):
    open_tab(page, "Melanoma threshold")
    rows = page.locator(".op-chosen-on-val .tabulator-row")
    rows.nth(2).wait_for()
    assert rows.count() == 3
    assert page.locator(".op-chosen-on-test .tabulator-row").count() == 3
    assert page.get_by_text("LEAKS test labels").first.is_visible()
    shot(page, "02_threshold")
    page.locator(".probability-scale button", has_text="calibrated").click()
    page.get_by_text("on calibrated P(mel) (T = ").first.wait_for()
    assert page.locator(".op-chosen-on-val .tabulator-row").count() == 3
    shot(page, "02b_threshold_calibrated")
    page.locator(".probability-scale button", has_text="as trained").click()


def test_gallery_and_dataset_render(page):
    open_tab(page, "Grad-CAM")
    cards = page.locator(".gallery-card")
    cards.first.wait_for()
    page.locator(".gallery-card img").first.wait_for()
    assert page.locator(".gallery-card img").count() >= cards.count() >= 1  # every card shows its overlays
    shot(page, "03_gradcam")
    open_tab(page, "Dataset")
    rows = page.locator(".split-table .tabulator-row")
    rows.first.wait_for()
    assert rows.count() == 8  # the seven classes and the total
    assert sorted(row.split()[0] for row in rows.all_inner_texts()) == sorted(["akiec", "bcc", "bkl", "df", "mel",
                                                                                "nv", "vasc", "total"])
    page.get_by_text("images of").first.wait_for()
    shot(page, "04_dataset")


def test_predict_an_upload_then_survive_a_text_file(page, demo_root, tmp_path):
    open_tab(page, "Predict")
    assert page.get_by_text("not a medical device").first.is_visible()
    upload = page.locator(".upload input[type=file]")
    upload.set_input_files(lesion_image(demo_root))
    page.locator(".gradcam img").wait_for()
    assert page.locator(".probabilities .tabulator-row").count() == 7
    assert page.get_by_text("P(mel) =").first.is_visible()
    assert page.locator(".probabilities .tabulator-col-title", has_text="calibrated (T = ").count() == 1
    # Panel's Alert renders its Markdown inside the element's shadow root: find the text within it
    page.locator(".synthetic-banner").get_by_text("SYNTHETIC training data.").wait_for()
    shot(page, "05_predict")

    photo = tmp_path / "astronaut.png"  # a photograph of a person: nothing like the arm's training images
    Image.fromarray(skimage_data.astronaut()).save(photo)
    page.locator('.upload .filepond--item[data-filepond-item-state="processing-complete"]').wait_for()
    upload.set_input_files(photo)
    page.locator(".ood-warning").get_by_text("Out of distribution.").wait_for()
    assert page.locator(".synthetic-banner").get_by_text("SYNTHETIC training data.").is_visible()
    shot(page, "05b_predict_out_of_distribution")

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    upload.set_input_files(notes)
    error = page.get_by_text("notes.txt is not a JPEG or PNG image")
    error.wait_for()
    assert page.locator(".gradcam img").count() == 0
    shot(page, "06_predict_error")

    # FilePond ignores a new file while the last one is still being sent: wait for it, as a user would
    page.locator('.upload .filepond--item[data-filepond-item-state="processing-complete"]').wait_for()
    upload.set_input_files(lesion_image(demo_root))  # the page still works
    page.locator(".gradcam img").wait_for()
    error.wait_for(state="hidden")
    assert page.locator(".probabilities .tabulator-row").count() == 7
    open_tab(page, "Sweep")
    page.locator(".summary-table .tabulator-row").first.wait_for()
    shot(page, "07_after_error")


def test_the_address_picks_the_sweep_and_the_arm_and_follows_the_tab_and_arm(page):
    sweep, arm = page.locator(".sweep-select select"), page.locator(".arm-select select")
    assert sweep.locator("option").all_inner_texts() == ["fake", "smoke"]
    assert (sweep.input_value(), arm.input_value()) == ("smoke", "sampler")  # as ADDRESS asked
    open_tab(page, "Arm")
    page.wait_for_url(re.compile(r"[?&]tab=arm"))
    page.get_by_text("Arm sampler: finished").wait_for()
    assert bokeh_plots(page, ".training-curves").count() == 2  # loss, validation
    assert bokeh_plots(page, ".confusion").count() == 2  # counts, row-normalized
    page.locator(".model-card").get_by_text("Model card").first.click()  # the collapsed card opens
    page.locator(".model-card").get_by_text("SYNTHETIC DEMO DATA: this model").wait_for()
    page.locator(".model-card").get_by_role("heading", name="Not a medical device").wait_for()
    shot(page, "08_arm")
    open_tab(page, "Per-class recall")
    page.wait_for_url(re.compile(r"[?&]tab=recall"))
    bokeh_plots(page, ".recall-heatmap")
    arm.select_option("baseline")  # on a tab that does not redraw for it
    page.wait_for_url(re.compile(r"[?&]sweep=smoke&arm=baseline&tab=recall"))
