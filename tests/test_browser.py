"""The widgets in a real JupyterLab, in headless Chromium (marker `browser`).

Needs Debian's chromium (/usr/bin/chromium) and pip playwright: `scripts/install-browser.sh VENV`
(the Makefile calls it). Screenshots land in test-output/browser/ (gitignored): look at them.
"""

import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support.jupyterlab import jupyterlab_server

pytestmark = pytest.mark.browser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.path.join(REPO, "test-output", "browser")
CHROMIUM = os.environ.get("SM_R_MAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

CELLS = [
    "%load_ext sm_r_magic",
    '%%r_train --backend local --name browser-fit --hp degree=2 --metric rmse="rmse: ([0-9.]+)"\n'
    'cat("fitting mpg ~ poly(wt, degree) on mtcars\\n")\n'
    "Sys.sleep(1.5)\n"
    'fit <- lm(reformulate(sprintf("poly(wt, %d)", sm_hp("degree", 1)), "mpg"), data = mtcars)\n'
    'cat(sprintf("rmse: %.4f\\n", sqrt(mean(residuals(fit)^2))))\n'
    'saveRDS(fit, file.path(sm_model_dir(), "model.rds"))',
    "%%r_train --backend local --name browser-long --async\n"
    'cat("a long job: sleeping 60 s\\n")\n'
    "Sys.sleep(60)",
    '%%r_train --backend local --name browser-fail\n'
    'check <- function(x) if (x < 1) stop("boom: x must be at least 1, got ", x)\n'
    "check(0)",
    "%r_jobs",
    '%%r_train --form --backend local --name sweep --hp alpha=1 --metric loss="loss: ([0-9.]+)"\n'
    'alpha <- sm_hp("alpha", 1)\n'
    "Sys.sleep(1)\n"
    'cat(sprintf("loss: %.3f\\n", 1 / alpha))',
    # a real local endpoint serving browser-fit's model (the Python variable the first cell made)
    "%%r_deploy --backend local --model browser_fit --name browser-ep\n"
    'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))',
    # the flow as cells, then a pipeline execution of them drawn as its step graph
    "%%r_processing --backend local --name browser-prep --output train --output test\n"
    "idx <- seq_len(nrow(mtcars)) %% 4 != 0\n"
    'write.csv(mtcars[idx, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)\n'
    'write.csv(mtcars[!idx, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)',
    '%%r_train --backend local --name browser-train --channel train={browser_prep.outputs["train"]}\n'
    'df <- read.csv(file.path(sm_channel("train"), "train.csv"))\n'
    'saveRDS(lm(mpg ~ wt + hp, data = df), file.path(sm_model_dir(), "model.rds"))',
    "%%r_processing --backend local --name browser-eval --input model={browser_train.model_data} "
    '--input test={browser_prep.outputs["test"]} --output evaluation\n'
    'model <- readRDS(file.path(sm_model_input("model"), "model.rds"))\n'
    'test <- read.csv(file.path(sm_input("test"), "test.csv"))\n'
    "rmse <- sqrt(mean((predict(model, test) - test$mpg)^2))\n"
    'sm_report(list(regression_metrics = list(rmse = list(value = rmse))), output = "evaluation")',
    # the pipeline made from those cells, run at once: the cell shows the execution's widget while it runs
    "with open('serve.R', 'w') as fh:\n"
    "    fh.write('model_fn <- function(model_dir) readRDS(file.path(model_dir, \"model.rds\"))\\n')\n"
    "%r_pipeline browser-pipe --steps browser_prep,browser_train,browser_eval --register browser-models "
    "--inference serve.R --fail-message 'RMSE above 10' "
    "--condition 'browser-eval.evaluation/evaluation.json:regression_metrics.rmse.value <= 10' --run",
]
PIPELINE_CELL = len(CELLS) - 1

# Each box of the step graph, where it is in the SVG's screenshot and its status colour as the page resolved it
BOXES_JS = """svg => Array.from(svg.querySelectorAll("g.smr-node")).map(g => {
  const rect = g.querySelector("rect"), at = svg.getBoundingClientRect(), box = rect.getBoundingClientRect();
  const [r, gr, b] = getComputedStyle(rect).stroke.match(/[0-9.]+/g).map(Number);
  return {step: g.dataset.step, status: g.dataset.status, x: Math.round(box.left - at.left),
          y: Math.round(box.top - at.top), w: Math.round(box.width), h: Math.round(box.height), r, g: gr, b};
})"""
# How many pixels inside each box of a PNG (decoded by the browser) have that box's colour
PIXELS_JS = """async ([png, boxes]) => {
  const img = new Image();
  img.src = "data:image/png;base64," + png;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return boxes.map(box => {
    const data = ctx.getImageData(box.x, box.y, box.w, box.h).data;
    let found = 0;
    for (let i = 0; i < data.length; i += 4) {
      const near = (k, want) => Math.abs(data[i + k] - want) < 16;
      if (near(0, box.r) && near(1, box.g) && near(2, box.b)) found++;
    }
    return found;
  });
}"""


def _require_browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install-browser.sh (installs Debian's chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: run scripts/install-browser.sh VENV (pip install playwright)")
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.skip("jupyterlab is not installed in this Python")


def _notebook(path):
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
                     "outputs": [], "source": src} for i, src in enumerate(CELLS)],
          "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                      "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    with open(path, "w") as fh:
        json.dump(nb, fh)


def _stop_leftovers(local_root):
    """A failed test must not leave the 60 s R job, a pipeline execution or the endpoint running: stop and delete
    them."""
    from sm_r_magic.backends.local import LocalBackend
    from sm_r_magic.config import RMagic
    from sm_r_magic.backends import folder_executions as executions

    for folder in local_root.glob("pipelines/*/executions/*"):
        try:
            executions.stop(executions.ExecutionFolder(str(folder)))
        except Exception:
            pass
    backend = LocalBackend(RMagic(local_root=str(local_root)))
    for job in backend.list_jobs():
        try:
            if not job.done:
                job.stop(wait=False)
        except Exception:
            pass
    for predictor in backend.list_endpoints():
        try:
            predictor.delete()
        except Exception:
            pass


def _r_prediction(wt):
    """What R itself predicts with the browser-fit model."""
    out = subprocess.run(["Rscript", "-e", "fit <- lm(mpg ~ poly(wt, 2), data = mtcars); "
                          f"cat(sprintf('%.17g', predict(fit, data.frame(wt = {wt}))))"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def _live_endpoints(local_root):
    from sm_r_magic.backends.local import LocalBackend
    from sm_r_magic.config import RMagic

    return [p for p in LocalBackend(RMagic(local_root=str(local_root))).list_endpoints()
            if p.status not in ("Deleted",)]


def test_widgets_in_jupyterlab(tmp_path, r_available):
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    shutil.rmtree(SHOTS, ignore_errors=True)
    os.makedirs(SHOTS, exist_ok=True)
    local_root = tmp_path / "sm-root"
    env = {"SM_R_MAGIC_LOCAL_ROOT": str(local_root), "PYTHONPATH": REPO}
    with jupyterlab_server(tmp_path, env=env) as lab, sync_playwright() as pw:
        _notebook(os.path.join(lab.root, "widgets.ipynb"))
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(lab.url("lab/tree/widgets.ipynb"), wait_until="domcontentloaded")
            cells = page.locator(".jp-NotebookPanel .jp-Cell")
            expect(cells).to_have_count(len(CELLS), timeout=45_000)
            lab.wait_for_kernel(timeout=45)

            def run(index):
                cell = cells.nth(index)
                cell.locator(".jp-InputArea-editor").click()
                page.keyboard.press("Shift+Enter")
                return cell

            def finished(cell, timeout=30_000):  # the prompt shows [n]: instead of [*]:
                expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout)

            finished(run(0))
            fit = run(1)
            badge = fit.locator('.smr-badge[data-status="Completed"]')
            expect(badge).to_be_visible(timeout=30_000)
            expect(fit.locator(".smr-kv")).to_contain_text("model.tar.gz")
            expect(fit.locator(".smr-kv")).to_contain_text(str(local_root))
            expect(fit.locator(".smr-pre")).to_contain_text("rmse:")
            finished(fit)
            fit.screenshot(path=os.path.join(SHOTS, "completed-light.png"))

            long = run(2)
            expect(long.locator('.smr-badge[data-status="InProgress"]')).to_be_visible(timeout=20_000)
            expect(long.locator(".smr-pre")).to_contain_text("sleeping 60 s", timeout=20_000)
            fail = run(3)  # runs while the async job keeps updating
            expect(fail.locator('.smr-badge[data-status="Failed"]')).to_be_visible(timeout=30_000)
            expect(fail.locator(".smr-pre").first).to_contain_text("boom: x must be at least 1")
            finished(fail)
            fail.screenshot(path=os.path.join(SHOTS, "failed-light.png"))
            jobs = run(4)
            expect(jobs.locator(".smr-dashboard")).to_be_visible(timeout=20_000)
            expect(jobs.locator(".smr-dashboard")).to_contain_text("browser-long")
            # the async widget kept ticking while the other cells ran (poller thread)
            expect(long.locator(".smr-timeline")).to_contain_text("Training", timeout=30_000)
            long.screenshot(path=os.path.join(SHOTS, "running-light.png"))

            long.locator("button.smr-stop").click()
            expect(long.locator("button.smr-confirm-stop")).to_be_visible(timeout=30_000)
            long.screenshot(path=os.path.join(SHOTS, "confirm-stop-light.png"))
            long.locator("button.smr-confirm-stop").click()
            expect(long.locator('.smr-badge[data-status="Stopped"]')).to_be_visible(timeout=30_000)
            long.screenshot(path=os.path.join(SHOTS, "stopped-light.png"))
            # the dashboard row turns Stopped too (its poller follows the job): wait for it, not a fixed time
            expect(jobs.locator('.smr-dashboard .smr-badge[data-status="Stopped"]')).to_have_count(1, timeout=30_000)
            jobs.screenshot(path=os.path.join(SHOTS, "dashboard-light.png"))
            page.screenshot(path=os.path.join(SHOTS, "notebook-light.png"))

            # the launch form: two variants, compared in its table
            form = run(5)
            finished(form)
            form.locator("button.smr-launch").click()
            expect(form.locator(".smr-table")).to_contain_text("sweep-", timeout=15_000)
            form.locator("textarea").first.fill("alpha=4")
            form.locator("button.smr-launch").click()
            expect(form.locator('.smr-table .smr-badge[data-status="Completed"]')).to_have_count(2, timeout=30_000)
            expect(form.locator(".smr-table")).to_contain_text("0.25")
            form.screenshot(path=os.path.join(SHOTS, "form-light.png"))

            endpoint = run(6)
            expect(endpoint.locator('.smr-badge[data-status="InService"]')).to_be_visible(timeout=30_000)
            expect(endpoint.locator(".smr-kv")).to_contain_text("http://127.0.0.1:")
            finished(endpoint)
            # poly(wt, 2) keeps no raw wt in its model frame: no example row to prefill, so type one
            endpoint.locator("textarea").fill("wt\n2.62")
            endpoint.locator("button.smr-send").click()
            response = endpoint.locator(".smr-scroll .smr-pre")
            expect(response).to_contain_text("[", timeout=15_000)
            assert json.loads(response.inner_text()) == pytest.approx([_r_prediction(2.62)], abs=1e-9)
            endpoint.screenshot(path=os.path.join(SHOTS, "endpoint-light.png"))

            # a pipeline execution of the flow's cells: the step graph's boxes and arrows, drawn in the page
            for index in range(PIPELINE_CELL - 3, PIPELINE_CELL):
                step_cell = run(index)
                expect(step_cell.locator('.smr-badge[data-status="Completed"]')).to_be_visible(timeout=60_000)
                finished(step_cell, timeout=60_000)
            pipeline = run(PIPELINE_CELL)
            graph = pipeline.locator(".smr-pipeline-widget svg.smr-graph")
            expect(pipeline.locator('.smr-pipeline-widget .smr-badge[data-status="Succeeded"]')).to_be_visible(
                timeout=120_000)
            finished(pipeline, timeout=60_000)
            expect(graph.locator("g.smr-node")).to_have_count(6)
            expect(graph.locator('g.smr-node[data-status="Succeeded"]')).to_have_count(5)
            expect(graph.locator('g.smr-node[data-step="fail"][data-status="NotRun"]')).to_have_count(1)
            expect(graph.locator('g.smr-arrow[data-label="if"][data-taken="true"]')).to_have_count(1)
            expect(graph.locator('g.smr-node[data-step="condition"]')).to_contain_text("True → if")
            png = graph.screenshot(path=os.path.join(SHOTS, "pipeline-light.png"))
            boxes = graph.evaluate(BOXES_JS)
            found = dict(zip([b["step"] for b in boxes], page.evaluate(PIXELS_JS, [base64.b64encode(png).decode(),
                                                                                  boxes])))
            succeeded = [b for b in boxes if b["status"] == "Succeeded"]
            assert len(succeeded) == 5 and len({(b["r"], b["g"], b["b"]) for b in succeeded}) == 1
            for box in succeeded:  # its border and bar in the status colour, in the screenshot
                assert found[box["step"]] >= 150, (box, found)
            assert found["fail"] == 0, found  # drawn grey (not run), not in a status colour
            pipeline.locator("button.smr-step-button", has_text="browser-train").click()
            expect(pipeline.locator('.smr-job-widget .smr-badge[data-status="Completed"]')).to_be_visible(
                timeout=30_000)
            expect(pipeline.locator(".smr-job-widget .smr-title")).to_contain_text("browser-train")
            pipeline.screenshot(path=os.path.join(SHOTS, "pipeline-step-job-light.png"))

            # dark theme, switched from the menu: the same live views re-styled by JupyterLab's variables
            page.get_by_role("menuitem", name="Settings").click()
            page.locator(".lm-Menu-item", has_text=re.compile(r"^Theme")).first.hover()
            page.locator(".lm-Menu-item", has_text="JupyterLab Dark").first.click()
            expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1, timeout=30_000)
            page.wait_for_timeout(1000)  # the theme's stylesheet applies
            cells.nth(1).screenshot(path=os.path.join(SHOTS, "completed-dark.png"))
            cells.nth(2).screenshot(path=os.path.join(SHOTS, "stopped-dark.png"))
            cells.nth(3).screenshot(path=os.path.join(SHOTS, "failed-dark.png"))
            cells.nth(4).screenshot(path=os.path.join(SHOTS, "dashboard-dark.png"))
            cells.nth(5).screenshot(path=os.path.join(SHOTS, "form-dark.png"))
            cells.nth(6).screenshot(path=os.path.join(SHOTS, "endpoint-dark.png"))
            pipeline.screenshot(path=os.path.join(SHOTS, "pipeline-dark.png"))

            # Delete, confirmed: the endpoint's R process goes away
            endpoint.locator("button.smr-delete").click()
            endpoint.locator("button.smr-confirm-delete").click()
            expect(endpoint.locator('.smr-badge[data-status="Deleted"]')).to_be_visible(timeout=20_000)
            assert not _live_endpoints(local_root)
            page.screenshot(path=os.path.join(SHOTS, "notebook-dark.png"))
        except Exception:
            try:
                page.screenshot(path=os.path.join(SHOTS, "failure.png"))
            except Exception:
                pass
            raise
        finally:
            browser.close()
            _stop_leftovers(local_root)
