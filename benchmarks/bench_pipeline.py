"""The local pipeline executor's overhead: the issue's 4-step pipeline (prep -> fit -> evaluate -> condition ->
register) on the local backend, against the sum of its three jobs' run times (goal: overhead under 10%).

    python benchmarks/bench_pipeline.py [--reps 5] [--json PATH]

Each repetition runs, side by side, the pipeline and the same three jobs as plain cells one after the other.
execution time: the execution's CreationTime (the start call) to its EndTime, from its state.json;
job time: a job's CreationTime to its end, from the backend's description. Two overheads:
  - against its own jobs: execution time minus the run times of the jobs it ran (resolving arguments,
    noticing a job's end, the condition and the registration, the runner's start where it is not hidden);
  - against the cells: execution time minus the run times of the same jobs run as plain cells, which also
    counts what the runner's start costs the jobs it runs beside (2 cores: it competes with R for CPU).
The three jobs run one after the other (each reads the previous one's output), so their times add up."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.test_pipeline_local import CONDITION, run_cells  # noqa: E402  the same cells as the tests


def job_seconds(backend, kind, name):
    desc = backend.describe_job(kind, name)
    end = desc.get("TrainingEndTime") or desc.get("ProcessingEndTime")
    return (end - desc["CreationTime"]).total_seconds()


def cells_seconds(csv, backend):
    """The same three jobs as plain cells: the sum of their run times."""
    return sum(job_seconds(backend, job.kind, job.name) for job in run_cells(csv))


def measure(folder, backend):
    from sm_r_magic.backends import folder_executions as ex

    answer = ex.describe(folder)
    assert answer["PipelineExecutionStatus"] == "Succeeded", answer["FailureReason"]
    total = (answer["EndTime"] - answer["CreationTime"]).total_seconds()
    jobs = 0.0
    for step in answer["Steps"]:
        if step.get("JobName"):
            kind = "training" if step["StepType"] == "Training" else "processing"
            jobs += job_seconds(backend, kind, step["JobName"])
    first_start = min(s["StartTime"] for s in answer["Steps"])
    return {"execution_s": total, "jobs_s": jobs, "overhead_s": total - jobs,
            "overhead_pct": 100 * (total - jobs) / jobs,
            "first_step_after_s": (first_start - answer["CreationTime"]).total_seconds()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=str(HERE / "results" / "pipeline.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        os.environ["SM_R_MAGIC_LOCAL_ROOT"] = root
        import sm_r_magic
        from sm_r_magic.backends import get_backend
        from sm_r_magic.workflow import definition as d
        from sm_r_magic.backends import folder_executions as ex

        csv = Path(root) / "data" / "mtcars.csv"
        csv.parent.mkdir()
        subprocess.run(["Rscript", "-e", f'write.csv(mtcars, "{csv}", row.names = FALSE)'], check=True)
        cells = run_cells(csv)
        definition = d.build(cells, condition=CONDITION.format(10), register="bench-models")
        backend = get_backend("local", sm_r_magic.settings())
        runs = []
        for _ in range(args.reps):
            cells_s = cells_seconds(csv, backend)
            folder = ex.start(backend, "bench", definition)
            ex.wait(folder, timeout=600, interval=0.05)
            run = measure(folder, backend)
            run.update(cells_s=cells_s, overhead_vs_cells_s=run["execution_s"] - cells_s,
                       overhead_vs_cells_pct=100 * (run["execution_s"] - cells_s) / cells_s)
            runs.append(run)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    results = dict(median, reps=args.reps, goal_overhead_pct=10, runs=runs)
    print(f"| 4-step local pipeline (median of {args.reps}) | seconds |\n|---|---:|")
    print(f"| execution: start to end | {median['execution_s']:.3f} |")
    print(f"| its three jobs' run times, summed | {median['jobs_s']:.3f} |")
    print(f"| executor overhead | {median['overhead_s']:.3f} ({median['overhead_pct']:.1f}% of the jobs' time; "
          "goal < 10%) |")
    print(f"| the same three jobs as cells, run times summed | {median['cells_s']:.3f} |")
    print(f"| overhead against the cells | {median['overhead_vs_cells_s']:.3f} "
          f"({median['overhead_vs_cells_pct']:.1f}%) |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
