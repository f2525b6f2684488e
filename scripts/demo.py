#!/usr/bin/env python3
"""`make demo`: execute notebooks/quickstart.ipynb on the local backend (this machine's R: no Docker, no AWS).

Writes the executed notebook next to it (quickstart.executed.ipynb) and an HTML copy (quickstart.html),
prints the predictions and where the files are, and exits non-zero when a cell fails. The notebook runs in a
scratch working directory (its data/ folder lands there, not in the repository); the jobs keep their folders
under the local root (RMagic.local_root: SM_R_MAGIC_LOCAL_ROOT, default ~/.sm-r-magic) so `%r_jobs` and
`%r_attach` find them later. Any endpoint the notebook started and did not delete is deleted at the end.

    python scripts/demo.py [--notebook notebooks/quickstart.ipynb] [--timeout 300]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")

# Run in the demo's kernel after the notebook: the predictions table, then clean-up of this kernel's endpoints.
RESULTS_PROBE = """
import json as _json
print(_json.dumps({"results": results[["model", "mpg", "predicted"]].to_dict(orient="records")}))
"""
CLEANUP_PROBE = """
from sm_r_magic.jobs import SESSION as _SESSION
for _p in list(_SESSION.endpoints):
    if _p.status != "Deleted":
        _p.delete()
        print("deleted endpoint", _p.endpoint_name)
"""


def stdout_of(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def run_probe(client, nb, source):
    """Run `source` in the notebook's kernel (not stored in the notebook); returns its stdout."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)  # nbclient stores the executed cell back at its index
    try:
        client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
    finally:
        nb.cells.pop()
    return stdout_of(cell)


def execute(path, workdir, timeout):
    """Execute the notebook at `path` with `workdir` as the kernel's cwd; returns (nb, results, error)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.setdefault("SM_R_MAGIC_PROGRESS", "text")  # log lines as text: readable in the HTML copy, offline
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": workdir}})
    results, error = None, None
    with client.setup_kernel(env=env):
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    print(f"[demo] cell {index}: {cell.source.splitlines()[0][:90]}", flush=True)
                client.execute_cell(cell, index)
            out = run_probe(client, nb, RESULTS_PROBE)
            results = json.loads(out.strip().splitlines()[-1])["results"]
        except CellExecutionError as exc:
            error = exc
        finally:
            try:
                cleaned = run_probe(client, nb, CLEANUP_PROBE)
                if cleaned:
                    print("[demo] " + cleaned.strip())
            except Exception as exc:  # the kernel died: its local endpoints die with it
                print(f"[demo] endpoint clean-up skipped: {exc}", file=sys.stderr)
    return nb, results, error


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def static_outputs(nb):
    """Widget views need a live kernel (their state is not saved): keep their text/plain form, which the
    handles keep current, so the executed copy and the HTML read the same offline."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and "text/plain" in data:
                del data[WIDGET_VIEW]
    return nb


def write_outputs(nb, path):
    import nbformat
    from nbconvert import HTMLExporter

    static_outputs(nb)
    stem = path[: -len(".ipynb")]
    executed, html = stem + ".executed.ipynb", stem + ".html"
    nbformat.write(nb, executed)
    body, _ = HTMLExporter().from_notebook_node(nb)
    with open(html, "w", encoding="utf-8") as fh:
        fh.write(body)
    return executed, html


def main(argv=None):
    parser = argparse.ArgumentParser(description="Execute the quickstart notebook on the local backend.")
    parser.add_argument("--notebook", default=DEFAULT_NOTEBOOK, help="Notebook to run (default: %(default)s).")
    parser.add_argument("--timeout", type=int, default=300, help="Seconds each cell may take (default 300).")
    args = parser.parse_args(argv)
    path = os.path.abspath(args.notebook)
    if not shutil.which("Rscript"):
        print("demo: Rscript not found: install R first (`make install` does: apt-get install r-base-core ...)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="sm-r-magic-demo-")
    try:
        nb, results, error = execute(path, workdir, args.timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    executed, html = write_outputs(nb, path)
    elapsed = time.monotonic() - started
    if error is not None:
        print(f"\ndemo: the notebook failed:\n{error}", file=sys.stderr)
        print(f"demo: the executed notebook (with the error) is {executed}", file=sys.stderr)
        return 1
    print("\nPredictions of the endpoint for the held-out cars:")
    width = max(len(r["model"]) for r in results)
    print(f"  {'car'.ljust(width)}  {'mpg':>5}  {'predicted':>9}")
    for row in results:
        print(f"  {row['model'].ljust(width)}  {row['mpg']:5.1f}  {row['predicted']:9.2f}")
    print(f"\nExecuted notebook: {executed}\nHTML copy:         {html}")
    print(f"Job folders:       {os.environ.get('SM_R_MAGIC_LOCAL_ROOT') or os.path.expanduser('~/.sm-r-magic')}")
    print(f"Done in {elapsed:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
