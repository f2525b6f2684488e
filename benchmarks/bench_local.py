"""Foundation numbers: a trivial local job vs a bare Rscript of the same code, and `%load_ext` time.

    python benchmarks/bench_local.py [--reps 5] [--json PATH]
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
CODE = 'cat("hello from R\\n")'


def bare_rscript(reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(["Rscript", "-e", CODE], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def local_job(reps, root):
    os.environ["SM_R_MAGIC_LOCAL_ROOT"] = root
    import sm_r_magic as s

    submit, total = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        job = s.train(CODE, wait=False, progress="none")
        submit.append(time.perf_counter() - t0)
        job.wait(progress="none")
        total.append(time.perf_counter() - t0)
        assert job.status == "Completed", job.failure_reason
    return statistics.median(submit), statistics.median(total)


def load_ext_time(reps):
    script = ("import time, sys; from IPython.testing.globalipapp import start_ipython; ip = start_ipython(); "
              "t = time.perf_counter(); ip.run_line_magic('load_ext', 'sm_r_magic'); "
              "print(time.perf_counter() - t, 'boto3' in sys.modules, 'ipywidgets' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(reps)]
    return statistics.median(float(r[0]) for r in runs), runs[0][1] == "True", runs[0][2] == "True"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=str(HERE / "results" / "local.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        rscript = bare_rscript(args.reps)
        submit, total = local_job(args.reps, root)
    load_ext, boto3_loaded, widgets_loaded = load_ext_time(args.reps)
    results = {"bare_rscript_s": rscript, "local_job_submit_s": submit, "local_job_total_s": total,
               "local_job_overhead_s": total - rscript, "load_ext_s": load_ext,
               "load_ext_imports_boto3": boto3_loaded, "load_ext_imports_ipywidgets": widgets_loaded,
               "reps": args.reps}
    print(f"| measure (median of {args.reps}) | seconds |\n|---|---:|")
    print(f"| bare `Rscript -e` of the code | {rscript:.3f} |")
    print(f"| local training job: submit returns | {submit:.3f} |")
    print(f"| local training job: submit to Completed | {total:.3f} |")
    print(f"| `%load_ext sm_r_magic` | {load_ext:.3f} (boto3 imported: {boto3_loaded}, "
          f"ipywidgets imported: {widgets_loaded}) |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
