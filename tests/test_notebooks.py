"""The example notebooks, executed top to bottom with nbclient in a real kernel ("python3"), and checked on
what they show and leave behind, not only on "no error".

Each notebook runs in a temporary copy of notebooks/ (its data files land there) with its own local root
(SM_R_MAGIC_LOCAL_ROOT) and RMagic.progress = "text" through the environment (SM_R_MAGIC_PROGRESS), so
the job logs are plain stream outputs. After the last cell, "probe" cells run in the same kernel to read
the notebook's variables; they are not stored in the notebook. sagemaker.ipynb runs against a moto server
(tests/support/moto_server.py) that the kernel reaches through AWS_ENDPOINT_URL.
"""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from sm_r_magic.backends.processes import pid_alive

from .conftest import REPO

from .support.moto_server import BUCKET, IMAGE, ROLE
from .support.rlang import r_output

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = os.path.join(REPO, "notebooks")
EXPECTED = {"quickstart.ipynb", "hyperparameters.ipynb", "bring-your-own-packages.ipynb", "sagemaker.ipynb",
            "pipeline.ipynb"}
CELL_TIMEOUT = 120


def stored_notebooks():
    return sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith(".ipynb") and not n.endswith(".executed.ipynb"))


def stdout_of(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def text_of(cell):
    """Everything a cell showed as text: streams, results and displays (text/plain)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


class Executed:
    """An executed notebook whose kernel is still running."""

    def __init__(self, client, nb, workdir):
        self.client = client
        self.nb = nb
        self.workdir = workdir

    def cell(self, start):
        """The code cell whose source starts with `start` (exactly one)."""
        found = [c for c in self.nb.cells if c.cell_type == "code" and c.source.startswith(start)]
        assert len(found) == 1, f"{len(found)} cells start with {start!r}"
        return found[0]

    def probe(self, source):
        """Run Python in the notebook's kernel and return its stdout (the cell is not kept)."""
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)  # nbclient stores the executed cell back at its index
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.nb.cells.pop()
        return stdout_of(cell)

    def probe_json(self, expression):
        out = self.probe(f"import json as _json\nprint(_json.dumps({expression}, default=str))")
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def execute(tmp_path, local_root, monkeypatch):
    """execute(name, **env) -> context manager giving an Executed notebook; the kernel stops at exit."""
    for name in [n for n in os.environ if n.startswith("SM_R_MAGIC_")]:
        if name not in ("SM_R_MAGIC_LOCAL_ROOT", "SM_R_MAGIC_METADATA_FILE"):
            monkeypatch.delenv(name)  # the caller's own settings (backend, r_repos, ...) stay out
    workdir = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, workdir, ignore=shutil.ignore_patterns("*.executed.ipynb", "*.html", "data",
                                                                        ".ipynb_checkpoints"))

    @contextlib.contextmanager
    def run(name, **env):
        nb = nbformat.read(str(workdir / name), as_version=4)
        client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                         resources={"metadata": {"path": str(workdir)}})
        kernel_env = {**os.environ, "SM_R_MAGIC_PROGRESS": "text", **env}
        with client.setup_kernel(env=kernel_env):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)  # CellExecutionError (with the traceback) on a failing cell
            yield Executed(client, nb, str(workdir))

    return run


# -- stored form ---------------------------------------------------------------------------------------------

def test_every_notebook_is_stored_without_outputs():
    names = stored_notebooks()
    assert EXPECTED <= set(names)
    for name in names:
        nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", name
        assert "widgets" not in nb.metadata, name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, \
                    f"{name} has outputs: run python scripts/strip_notebooks.py"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name
    check = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "strip_notebooks.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_strip_script_removes_outputs_and_keeps_sources(tmp_path):
    src = os.path.join(NOTEBOOKS, "quickstart.ipynb")
    dirty = tmp_path / "quickstart.ipynb"
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = 3
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
            cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nbformat.write(nb, str(dirty))
    script = os.path.join(REPO, "scripts", "strip_notebooks.py")
    check = subprocess.run([sys.executable, script, "--check", str(dirty)], capture_output=True, text=True)
    assert check.returncode == 1 and "quickstart.ipynb" in check.stdout
    subprocess.run([sys.executable, script, str(dirty)], check=True, capture_output=True)
    assert dirty.read_text() == open(src).read()  # byte-identical to the stored notebook


# -- quickstart ----------------------------------------------------------------------------------------------

def test_quickstart(execute, local_root, r_available):
    with execute("quickstart.ipynb") as run:
        state = run.probe_json('{"predictions": predictions, "test": os.path.join(prep.outputs["test"], "test.csv"), '
                               '"model": job.model_data, "status": predictor.status, '
                               '"folder": predictor.local_folder, "backend": job.backend_name}')
        processing = run.cell("%%r_processing")
        training = run.cell("%%r_train")
        deploy_out = text_of(run.cell("%%r_deploy"))
        deleted = text_of(run.cell("predictor.delete()"))
        final = stdout_of(run.cell("results = "))

    assert state["backend"] == "local"
    assert "train rows: 24 test rows: 8" in stdout_of(processing) and "Completed" in stdout_of(processing)
    assert "train_rmse:" in stdout_of(training) and "Completed" in stdout_of(training)
    assert "InService" in deploy_out

    # the endpoint's predictions are R's own predict() on the test rows the processing job wrote
    script = (f'd <- tempfile(); dir.create(d); untar("{state["model"]}", exdir = d); '
              f'm <- readRDS(file.path(d, "model.rds")); '
              f'cat(sprintf("%.15g", predict(m, newdata = read.csv("{state["test"]}"))), sep = "\\n")')
    expected = [float(v) for v in r_output(script).split()]
    assert len(expected) == 8
    assert state["predictions"] == pytest.approx(expected, abs=1e-6)

    # the endpoint is gone: status, listing, and its R server process
    assert state["status"] == "Deleted"
    assert "no live endpoints" in deleted
    endpoints = local_root / "endpoints"
    states = [json.load(open(endpoints / name / "state.json")) for name in os.listdir(endpoints)]
    assert len(states) == 1 and states[0]["pid"]
    assert not pid_alive(states[0]["pid"])

    # the final table: every held-out car with its actual mpg and the prediction
    test_rows = r_output(f'cat(read.csv("{state["test"]}")$model, sep = "\\n")').splitlines()
    lines = final.splitlines()
    assert lines[0].split() == ["model", "mpg", "predicted", "error"]
    for car, predicted, line in zip(test_rows, expected, lines[1:9]):
        assert line.strip().startswith(car) and f"{predicted:.2f}" in line
    assert lines[9].startswith("test RMSE:")


# -- hyperparameters -----------------------------------------------------------------------------------------

def test_hyperparameters(execute, r_available):
    with execute("hyperparameters.ipynb") as run:
        table = run.probe_json('table.to_dict(orient="records")')
        data = run.workdir + "/data"
        submitted = [text_of(run.cell(f"%%r_train {{common}} --name {n} ")) for n in ("wt", "wt-hp", "all", "all-ridge")]
        best = stdout_of(run.cell("best = "))

    assert len(table) == 4
    by_name = {row["job"].rsplit("-", 3)[0]: row for row in table}
    assert set(by_name) == {"wt", "wt-hp", "all", "all-ridge"}
    assert all(row["status"] == "Completed" for row in table)
    rmses = [row["rmse"] for row in table]
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in rmses)
    assert rmses == sorted(rmses)
    assert by_name["all-ridge"]["lambda"] == 5 and by_name["all"]["lambda"] == 0
    # --async: each cell returned at once, before the job printed its metric
    assert all("rmse:" not in out for out in submitted)

    # lambda = 0 is ordinary least squares: R's lm() on the same split gives the same validation RMSE
    for name, formula in (("wt", "mpg ~ wt"), ("wt-hp", "mpg ~ wt + hp"), ("all", "mpg ~ .")):
        expected = float(r_output(f'tr <- read.csv("{data}/train/train.csv"); va <- read.csv("{data}/validation/'
                                 f'validation.csv"); m <- lm({formula}, tr); '
                                 'cat(sqrt(mean((va$mpg - predict(m, va))^2)))'))
        assert by_name[name]["rmse"] == pytest.approx(expected, abs=1e-5)
    assert by_name["all-ridge"]["rmse"] != pytest.approx(by_name["all"]["rmse"], abs=1e-3)
    assert best.startswith(f"best: {table[0]['job']} ") and "model.tar.gz" in best


# -- bring your own packages ---------------------------------------------------------------------------------

def test_bring_your_own_packages(execute, local_root, r_available):
    with execute("bring-your-own-packages.ipynb") as run:
        run.probe("from sm_r_magic import api as _api")
        logs = run.probe_json('{"first": first.logs(), "second": second.logs(), '
                              '"status": [first.status, second.status], "repos": _api.config().r_repos}')
        first_out = stdout_of(run.cell("%%r_processing --packages smrmetrics"))
        repo_url = "file://" + os.path.join(run.workdir, "r-repo")

    library = local_root / "r-library"
    assert logs["status"] == ["Completed", "Completed"]
    assert logs["repos"] == repo_url
    first = logs["first"]
    assert (f"[sm-r-magic] installing R packages: smrmetrics (from {repo_url}; asked for by --packages) "
            f"into {library}") in first
    assert "* DONE (smrmetrics)" in first and "smrmetrics 0.1.0" in first
    expected = r_output('f <- lm(mpg ~ wt + hp, mtcars); r <- mtcars$mpg - fitted(f); '
                       'cat("rmse:", sqrt(mean(r^2)), "mae:", mean(abs(r)))')
    assert expected in first  # the package's functions ran and computed what R computes
    assert "installing R packages" in first_out  # and the notebook showed it
    second = logs["second"]
    assert f"R packages already installed: smrmetrics (library {library})" in second
    assert "installing" not in second
    assert sorted(os.listdir(library)) == ["smrmetrics"]


# -- pipeline ------------------------------------------------------------------------------------------------

def test_pipeline(execute, local_root, r_available):
    """The seed's complete example as cells: two executions register versions 1 and 2, a stricter pipeline is
    blocked by its condition with the Fail step's message, %r_models lists newest first, the approved version is
    deployed and predicts what R's own predict() of that registered model gives, then the endpoint is gone."""
    with execute("pipeline.ipynb") as nb:  # in the kernel, `run` is the first execution
        state = nb.probe_json(
            '{"runs": [(e.status, [s["StepName"] for s in e.steps()]) for e in (run, run2, blocked)], '
            '"blocked_reason": blocked.failure_reason, "predictions": predictions, '
            '"test": os.path.join(run2.step_job("prep").outputs["test"], "test.csv"), '
            '"run_ids": [run.name, run2.name], "models": [run.step_job("fit").model_data, '
            'run2.step_job("fit").model_data], "endpoint": predictor.status, "folder": predictor.local_folder}')
        served = nb.probe_json('predictor.backend.endpoint_model_request(predictor.endpoint_name)'
                                '["PrimaryContainer"]["ModelDataUrl"]')
        described = text_of(nb.cell("%r_pipeline quakes "))
        blocked_out = stdout_of(nb.cell("%r_pipeline quakes-strict"))
        models_table = stdout_of(nb.cell("%r_models")).splitlines()
        approved = stdout_of(nb.cell("%r_approve"))
        deleted = text_of(nb.cell("predictor.delete()"))

    assert "if it holds, register the model of fit into quakes-models (served by serve.R as inference.R)" in described
    assert "parameter raw = " in described and described.rstrip().endswith("the CreatePipeline JSON")
    registered = ["prep", "fit", "evaluate", "condition", "register"]
    assert state["runs"][:2] == [["Succeeded", registered], ["Succeeded", registered]]
    # the blocked run: the condition did not hold, the Fail step ended it with its message, nothing registered
    assert state["runs"][2] == ["Failed", ["prep", "fit", "evaluate", "condition", "fail"]]
    assert state["blocked_reason"] == "test RMSE above 0.1: not registered"
    assert "Failed" in blocked_out and "test RMSE above 0.1: not registered" in blocked_out
    assert "condition  Condition      Succeeded  False" in blocked_out

    # %r_models: both versions, newest first, pending, each with the execution that registered it
    assert models_table[0].split() == ["version", "approval", "created", "metrics", "execution"]
    rows = [line.split() for line in models_table[1:]]
    assert [row[0] for row in rows] == ["quakes-models/2", "quakes-models/1"]
    assert [row[1] for row in rows] == ["PendingManualApproval"] * 2
    assert [row[-1] for row in rows] == state["run_ids"][::-1]
    assert approved.strip() == "quakes-models/2: Approved"

    # the deployed endpoint served version 2's model, and answered what R's predict() of that model gives
    assert served == state["models"][1]
    script = (f'd <- tempfile(); dir.create(d); untar("{served}", exdir = d); m <- readRDS(file.path(d, "model.rds")); '
              f'cat(sprintf("%.15g", predict(m, newdata = read.csv("{state["test"]}"))), sep = "\\n")')
    expected = [float(v) for v in r_output(script).split()]
    assert len(expected) == 250  # every fourth of the 1,000 earthquakes of the second run
    assert state["predictions"] == pytest.approx(expected, abs=1e-9)

    # the endpoint is gone, its R server too
    assert state["endpoint"] == "Deleted" and "no live endpoints" in deleted
    endpoint_state = json.load(open(os.path.join(state["folder"], "state.json")))
    assert not pid_alive(endpoint_state["pid"])


# -- sagemaker (against moto) --------------------------------------------------------------------------------

def test_sagemaker_against_moto(execute, moto_server, r_available):
    from moto.backends import get_backend

    canned = [20.5, 21.25, 15.0, 10.75, 27.0, 14.5, 26.25, 22.0]
    moto_server.seed_endpoint_results([{"Body": "".join(f"{v}\n" for v in canned), "ContentType": "text/csv"}])
    with execute("sagemaker.ipynb", SM_R_MAGIC_ROLE=ROLE, SM_R_MAGIC_IMAGE=IMAGE) as run:
        state = run.probe_json('{"predictions": predictions, "prep": prep.name, "job": job.name, '
                               '"endpoint": predictor.endpoint_name, "backend": job.backend_name}')
        dry_run = json.loads(stdout_of(run.cell("%%r_train --dry-run")))
        image_cell = stdout_of(run.cell("from sm_r_magic import api"))
        answered = stdout_of(run.cell("import pandas as pd"))
        deploy_out = text_of(run.cell("%%r_deploy"))
        deleted = text_of(run.cell("predictor.delete()"))
        local_csv = open(os.path.join(run.workdir, "data", "mtcars.csv"), "rb").read()

    assert state["backend"] == "sagemaker"
    assert dry_run["RoleArn"] == ROLE and dry_run["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert image_cell.strip() == f"using the image {IMAGE}"  # the push cell was skipped, not run
    assert state["predictions"] == canned
    assert answered.strip() == f"the endpoint answered: {canned}"
    assert "InService" in deploy_out and "no live endpoints" in deleted

    sagemaker = moto_server.sagemaker()
    assert list(sagemaker.processing_jobs) == [state["prep"]]  # the dry run created nothing
    assert list(sagemaker.training_jobs) == [state["job"]]
    s3 = moto_server.client("s3")
    sm = moto_server.client("sagemaker")
    processing = sm.describe_processing_job(ProcessingJobName=state["prep"])
    training = sm.describe_training_job(TrainingJobName=state["job"])
    raw = next(i for i in processing["ProcessingInputs"] if i["InputName"] == "raw")["S3Input"]["S3Uri"]
    bucket, key = raw[len("s3://"):].split("/", 1)
    assert bucket == BUCKET and s3.get_object(Bucket=bucket, Key=key)["Body"].read() == local_csv
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in processing["ProcessingOutputConfig"]["Outputs"]}
    channel = training["InputDataConfig"][0]
    assert channel["ChannelName"] == "train" and channel["DataSource"]["S3DataSource"]["S3Uri"] == outputs["train"]
    assert training["HyperParameters"]["formula"] == '"mpg ~ wt + hp"'
    assert training["AlgorithmSpecification"]["TrainingImage"] == IMAGE and training["RoleArn"] == ROLE
    code = json.loads(training["HyperParameters"]["sagemaker_submit_directory"])
    assert s3.head_object(Bucket=BUCKET, Key=code[len(f"s3://{BUCKET}/"):])["ContentLength"] > 0
    # the endpoint was invoked with the held-out rows as CSV (moto keys its results by request, not by endpoint
    # name: the name travels in the URL path), then deleted with its config and model
    import base64

    import pandas as pd

    runtime = get_backend("sagemaker-runtime")[moto_server.account][moto_server.region]
    requests = [json.loads(base64.b64decode(r)) for by_name in runtime.results.values() for r in by_name]
    expected_body = pd.read_csv(io.BytesIO(local_csv)).iloc[3::4].to_csv(index=False)
    assert [(r["Body"], r["Accept"]) for r in requests] == [(expected_body, "text/csv")]
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []


# -- make demo -----------------------------------------------------------------------------------------------

def test_demo_script_writes_executed_notebook_and_html(tmp_path, local_root, r_available):
    notebook = tmp_path / "quickstart.ipynb"
    shutil.copy(os.path.join(NOTEBOOKS, "quickstart.ipynb"), notebook)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_R_MAGIC_")}
    env["SM_R_MAGIC_LOCAL_ROOT"] = str(local_root)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--notebook", str(notebook)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed = tmp_path / "quickstart.executed.ipynb"
    html = tmp_path / "quickstart.html"
    assert f"Executed notebook: {executed}" in proc.stdout and f"HTML copy:         {html}" in proc.stdout
    assert "Toyota Corolla" in proc.stdout and "predicted" in proc.stdout
    nb = nbformat.read(str(executed), as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells)
    assert not any(o.output_type == "error" for c in code_cells for o in c.outputs)
    page = html.read_text()
    assert "test RMSE:" in page and "InService" in page
    assert not list(tmp_path.glob("data"))  # the notebook's data went to a scratch folder
    for name in os.listdir(local_root / "endpoints"):
        state = json.load(open(local_root / "endpoints" / name / "state.json"))
        assert state["status"] == "Deleted" and not pid_alive(state["pid"])


def test_demo_script_fails_on_a_failing_cell(tmp_path, local_root, r_available):
    nb = nbformat.read(os.path.join(NOTEBOOKS, "quickstart.ipynb"), as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell('raise RuntimeError("broken on purpose")'))
    notebook = tmp_path / "quickstart.ipynb"
    nbformat.write(nb, str(notebook))
    env = {**os.environ, "SM_R_MAGIC_LOCAL_ROOT": str(local_root)}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--notebook", str(notebook)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "broken on purpose" in proc.stderr
    executed = nbformat.read(str(tmp_path / "quickstart.executed.ipynb"), as_version=4)
    assert any(o.output_type == "error" for o in executed.cells[3].outputs)
