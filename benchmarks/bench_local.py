"""Local jobs against a bare Rscript of the same code, and what `%load_ext` and the first cell cost.

    python benchmarks/bench_local.py [--reps 7] [--json PATH]

Measured side by side in one run (each repetition runs every variant once, in turn; medians):
1. Submit to Completed of a local training job (`sm_r_magic.train(code)`, then waiting; the wait notices the end
   by polling state.json), against `Rscript -e code`:
     - warm:  a pre-started runner is waiting (a short pause between cells, as a person typing gives the pool
              time to refill);
     - back-to-back: the next job is submitted as soon as the last one completed (the refill may still be
              starting its R: the job waits for it);
     - cold:  RMagic.warm_processes off (a runner and R started for the job).
   Two codes: a trivial one (`cat("hello from R")`) and one doing real work (a linear model on 1e6 x 30
   numbers, ~0.5-1 s of R), whose job should cost no more than its own R time.
2. `%load_ext sm_r_magic` (a fresh IPython in a subprocess): its time, and whether boto3/ipywidgets were
   imported; then the first `%%r_train` cell against the later ones in the same kernel, right after
   `%load_ext` (back-to-back) and after a short pause (--pause seconds). The local root exists beforehand, as
   it does for anyone who ran a job before (a fresh root is created by the first job; its warm runners start
   then).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
TRIVIAL = 'cat("hello from R\\n")'
WORK = ('set.seed(1); d <- as.data.frame(matrix(rnorm(3e6), ncol = 30)); fit <- lm(V1 ~ ., d); '
        'cat("intercept", coef(fit)[[1]], "\\n")')


def bare_rscript(code):
    t0 = time.perf_counter()
    subprocess.run(["Rscript", "-e", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def local_job(code, warm, wait_for_pool):
    from sm_r_magic import api
    from sm_r_magic.backends.warm_pool import POOL

    api.config().warm_processes = warm
    if warm and wait_for_pool:
        from sm_r_magic.backends import get_backend

        get_backend("local", api.config()).launcher.prestart()  # (no refill was started while warm was off)
        deadline = time.monotonic() + 60
        while not POOL.ready("training") and time.monotonic() < deadline:
            time.sleep(0.01)
    t0 = time.perf_counter()
    job = api.train(code, wait=False, progress="none")
    submitted = time.perf_counter() - t0
    job.wait(progress="none")
    total = time.perf_counter() - t0
    assert job.status == "Completed", job.failure_reason
    return submitted, total


def bench_jobs(reps, root):
    os.environ["SM_R_MAGIC_LOCAL_ROOT"] = root
    from sm_r_magic import api

    api.train("1", wait=True, progress="none")  # creates the root; the pool fills
    rows = {}
    for label, code in (("trivial", TRIVIAL), ("work", WORK)):
        runs = {k: [] for k in ("bare", "warm", "back_to_back", "cold")}
        for _ in range(reps):
            runs["bare"].append(bare_rscript(code))
            runs["warm"].append(local_job(code, True, wait_for_pool=True)[1])
            runs["back_to_back"].append(local_job(code, True, wait_for_pool=False)[1])
            runs["cold"].append(local_job(code, False, wait_for_pool=False)[1])
        rows[label] = {k: statistics.median(v) for k, v in runs.items()}
        rows[label]["runs"] = runs
    api.config().warm_processes = True
    return rows


LOAD_EXT = """
import json, os, sys, threading, time
from IPython.testing.globalipapp import start_ipython
HEAVY = ("boto3", "botocore", "ipywidgets", "pandas")
seen = set()
class Spy:  # heavy imports that %load_ext itself pays for (the warm-up thread reads botocore's model later)
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is threading.main_thread() and name.split(".")[0] in HEAVY:
            seen.add(name.split(".")[0])
ip = start_ipython()
sys.meta_path.insert(0, Spy())
t = time.perf_counter()
ip.run_line_magic("load_ext", "sm_r_magic")
load_ext = time.perf_counter() - t
heavy = sorted(seen)
ip.run_line_magic("config", "RMagic.progress = 'none'")
time.sleep(float(sys.argv[1]))
cells = []
for i in range(int(sys.argv[2])):
    t = time.perf_counter()
    result = ip.run_cell('%%r_train --name cell\\ncat("hello from R\\\\n")\\n')
    cells.append(time.perf_counter() - t)
    assert result.success and ip.user_ns["cell"].status == "Completed"
    time.sleep(float(sys.argv[1]))
print(json.dumps({"load_ext": load_ext, "heavy": heavy, "cells": cells}))
"""


def load_ext_and_first_cell(reps, pause, cells, root):
    env = dict(os.environ, SM_R_MAGIC_LOCAL_ROOT=root, PYTHONPATH=str(HERE.parent))
    runs = [json.loads(subprocess.run([sys.executable, "-c", LOAD_EXT, str(pause), str(cells)], env=env, check=True,
                                      capture_output=True, text=True).stdout.splitlines()[-1]) for _ in range(reps)]
    first = statistics.median(r["cells"][0] for r in runs)
    later = statistics.median(c for r in runs for c in r["cells"][1:])
    return {"load_ext_s": statistics.median(r["load_ext"] for r in runs), "heavy_imports": runs[0]["heavy"],
            "first_cell_s": first, "later_cells_s": later, "first_minus_later_s": first - later, "pause_s": pause}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between cells in the paused variant")
    parser.add_argument("--json", default=str(HERE / "results" / "local.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        jobs = bench_jobs(args.reps, root)
        cells = {"back_to_back": load_ext_and_first_cell(args.reps, 0.0, 4, root),
                 "paused": load_ext_and_first_cell(args.reps, args.pause, 4, root)}
    print(f"\nLocal training job, submit to Completed, vs a bare `Rscript -e` of the same code "
          f"(median of {args.reps})")
    print("| code | bare Rscript | warm | ratio | back-to-back | ratio | cold (warm off) | ratio |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, row in jobs.items():
        bare = row["bare"]
        print(f"| {label} | {bare:.3f} s | {row['warm']:.3f} s | {row['warm'] / bare:.2f} | "
              f"{row['back_to_back']:.3f} s | {row['back_to_back'] / bare:.2f} | {row['cold']:.3f} s | "
              f"{row['cold'] / bare:.2f} |")
    print(f"\n`%load_ext sm_r_magic`: {cells['paused']['load_ext_s'] * 1000:.0f} ms (heavy modules imported: "
          f"{cells['paused']['heavy_imports'] or 'none'})")
    for label, row in cells.items():
        print(f"first %%r_train cell {label} ({row['pause_s']:g} s pause): {row['first_cell_s'] * 1000:.0f} ms, "
              f"later cells {row['later_cells_s'] * 1000:.0f} ms: first - later = "
              f"{row['first_minus_later_s'] * 1000:+.0f} ms")
    results = {"jobs": jobs, "load_ext_and_cells": cells, "reps": args.reps, "cpus": os.cpu_count(),
               "load_average": os.getloadavg()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
