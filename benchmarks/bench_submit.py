"""Submission latency and watching cost of the sagemaker backend, against moto on loopback.

    python benchmarks/bench_submit.py [--repeats 7] [--scale 60] [--minutes 10] [--jobs 20] [--no-sdk]
                                      [--round-trip-ms 20]

1. Submit: wall time from the api call (what a cell runs: `sm_r_magic.train(code, channels=..., wait=False)`)
   to the moment CreateTrainingJob returns (a botocore after-call hook), for a one-file cell with a one-file
   channel. "first": code and data never seen (uploads happen); "repeat": the same cell and data again
   (content-addressed dedup: small files are offered with a conditional PutObject that S3 refuses with 412,
   nothing is stored). Median of --repeats runs, with the breakdown (R's syntax
   check, S3 staging, CreateTrainingJob, the rest) and the number of AWS calls. The very first call of the
   process (boto3 clients, STS, bucket creation, R's parser starting) is reported apart as "cold"; before it,
   another process sends moto one request of each kind, so that moto's own first-request imports are paid by
   neither column's "cold" (the SDK runs later, against the same moto).
   Side by side, in the same run against the same moto: the SageMaker Python SDK v2's
   `Estimator.fit(wait=False)` of the same job (sdk_v2_submit.py), from a throwaway venv (.cache/sdk-v2-venv,
   made with `python3 -m venv` + `pip install "sagemaker<3"` when missing, ~2 min; if that fails the column is
   skipped with the reason), and the ratio of the medians. Also the ceiling of that ratio on this machine:
   the SDK's median over the CreateTrainingJob round trip alone, the one request no client can leave out.
   Then both again with --round-trip-ms (20) added to every AWS request (a botocore before-send wait, in the
   sending thread): moto on loopback answers in ~5 ms with no network between, and from a notebook each
   request also crosses the network, so there the number of round trips one after the other decides.
2. Watching: AWS calls per job-minute while jobs run. moto's jobs are kept InProgress and their log streams
   receive events, and the jobs are watched for --minutes simulated minutes. Time is compressed by --scale:
   every interval of the backend (poll 5 s -> 30 s, describe reuse, log interval, stream rescan) is divided
   by the scale, so one real second stands for `scale` seconds; calls are counted by operation with a
   botocore event hook and reported per simulated job-minute. Two watchers:
     - wait:   the foreground wait loop (`job.wait()`, the text progress view), one thread per job;
     - ui:     a progress UI asking for status and logs every 0.5 s (the widget poller's worst case).
Results go to benchmarks/results/submit.json.
"""

import argparse
import collections
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
SDK_VENV = os.path.join(REPO, ".cache", "sdk-v2-venv")

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-r-magic:0.1.0"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
CODE = 'df <- read.csv(file.path(sm_channel("train"), "data.csv"))\nsaveRDS(lm(y ~ x, df), file.path(sm_model_dir(), "m.rds"))\n'


WARM_MOTO = """
import boto3
boto3.client("sts").get_caller_identity()
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench-warm-up")
s3.put_object(Bucket="bench-warm-up", Key="k", Body=b"x", IfNoneMatch="*")
s3.head_object(Bucket="bench-warm-up", Key="k")
boto3.client("sagemaker").create_training_job(
    TrainingJobName="bench-warm-up", RoleArn=ROLE,
    AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
    OutputDataConfig={"S3OutputPath": "s3://bench-warm-up/out"},
    ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
    StoppingCondition={"MaxRuntimeInSeconds": 3600})
"""


def warm_moto(server):
    """One request of each kind the submissions make, from another process, then moto's state cleared: moto
    imports its S3/STS/SageMaker parts at their first request (~0.3 s), which is not the client's cost."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = f"ROLE, IMAGE = {ROLE!r}, {IMAGE!r}\n" + WARM_MOTO
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    server.reset()


def start_moto():
    from tests.support.moto_server import start_server

    server = start_server()
    tmp = tempfile.mkdtemp(prefix="bench-aws-")
    os.environ.update(AWS_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION=server.region, AWS_MAX_ATTEMPTS="1",
                      AWS_CONFIG_FILE=os.path.join(tmp, "none"), AWS_SHARED_CREDENTIALS_FILE=os.path.join(tmp, "none"),
                      SM_R_MAGIC_METADATA_FILE=os.path.join(tmp, "none"))
    for name in ("AWS_PROFILE", "SM_R_MAGIC_ROLE", "SM_R_MAGIC_IMAGE", "SM_R_MAGIC_BUCKET"):
        os.environ.pop(name, None)
    return server


class Counter:
    """AWS calls by operation, through botocore's before-call event on the backend's session (register it
    before the backend creates its clients: each client copies the session's handlers when created)."""

    def __init__(self, backend):
        self.counts = collections.Counter()
        self.lock = threading.Lock()
        backend.session.boto.events.register("before-call", self.count)

    def count(self, model, **kwargs):
        with self.lock:
            self.counts[model.name] += 1

    def snapshot(self):
        with self.lock:
            return collections.Counter(self.counts)


def add_round_trip(events, seconds):
    """Every AWS request waits `seconds` before it is sent (botocore's before-send event, in the sending
    thread): a network round trip as from a notebook to its region, which moto on loopback does not have.
    Requests sent in parallel wait in parallel, as on a real network."""
    if seconds:
        def wait(**kwargs):  # returns None: a before-send handler's return value would replace the response
            time.sleep(seconds)

        events.register("before-send", wait)


def bench_submit(repeats, tmp, round_trip=0.0):
    from sm_r_magic import api, config, rtools
    from sm_r_magic.backends import get_backend

    settings = config.set_current(config.RMagic(backend="sagemaker", image=IMAGE, role=ROLE, progress="none"))
    backend = get_backend("sagemaker", settings)
    marks = {}
    syntax = []
    real_check = rtools.check_syntax

    def timed_check(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real_check(*args, **kwargs)
        finally:
            syntax.append(time.perf_counter() - t)

    rtools.check_syntax = timed_check
    api.rtools.check_syntax = timed_check
    staging = []
    real_upload = backend.upload

    def timed_upload(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real_upload(*args, **kwargs)
        finally:
            staging.append(time.perf_counter() - t)

    backend.upload = timed_upload
    # the Create call's own round trip, and when it returned
    backend.session  # noqa: B018  (clients are created lazily: register on the session's events)
    backend.session.boto.events.register("before-call.sagemaker.CreateTrainingJob",
                                         lambda **kw: marks.__setitem__("create_start", time.perf_counter()))
    backend.session.boto.events.register("after-call.sagemaker.CreateTrainingJob",
                                         lambda **kw: marks.__setitem__("create_end", time.perf_counter()))
    add_round_trip(backend.session.boto.events, round_trip)  # (this pass's "cold" is not reported with it)

    def submit(tag, data_path):
        syntax.clear()
        staging.clear()
        calls = backend.api_calls
        start = time.perf_counter()
        api.train(CODE + f"# {tag}\n", name="bench", channels={"train": data_path}, wait=False)
        total, create = marks["create_end"] - start, marks["create_end"] - marks["create_start"]
        return {"total_s": total, "create_s": create, "syntax_check_s": sum(syntax), "staging_s": sum(staging),
                "other_s": total - create - sum(syntax) - sum(staging), "api_calls": backend.api_calls - calls}

    def data_file(i):
        path = os.path.join(tmp, f"data-{i}", "data.csv")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write("x,y\n" + "".join(f"{j},{2 * j}\n" for j in range(1000)) + f"0,{i!r}\n")
        return path

    cold = submit("cold", data_file("cold"))
    first, repeat = [], []
    for i in range(repeats):
        path = data_file(i)
        first.append(submit(f"run-{i}", path))     # new code, new data: both uploaded
        repeat.append(submit(f"run-{i}", path))    # the same cell and data again: nothing uploaded
    return {"cold": cold, "first": first, "repeat": repeat, "rscript": bool(rtools.find_rscript(settings.rscript))}


def ensure_sdk_venv():
    """The Python of .cache/sdk-v2-venv (with sagemaker<3), made when missing -> (python, None) or (None, why)."""
    python = os.path.join(SDK_VENV, "bin", "python")
    if os.path.exists(python) and not subprocess.run([python, "-c", "import sagemaker"],
                                                     capture_output=True).returncode:
        return python, None
    print(f"making {os.path.relpath(SDK_VENV)} with the SageMaker SDK v2 (pip install 'sagemaker<3', ~2 min)",
          flush=True)
    try:
        subprocess.run(["python3", "-m", "venv", SDK_VENV], check=True, capture_output=True, timeout=300)
        subprocess.run([python, "-m", "pip", "install", "-q", "sagemaker<3"], check=True, capture_output=True,
                       timeout=1800)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        detail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else [str(exc)]
        return None, f"could not install the SageMaker SDK v2 into {SDK_VENV}: {detail[0][:300]}"
    return python, None


def bench_sdk(repeats, round_trip=0.0):
    """The SDK v2 column: {"cold", "first", "first_calls", ...} or {"skipped": why}."""
    python, why = ensure_sdk_venv()
    if python is None:
        return {"skipped": why}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BENCH_ROUND_TRIP_S"] = str(round_trip)
    proc = subprocess.run([python, os.path.join(HERE, "sdk_v2_submit.py"), str(repeats), IMAGE, ROLE],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode:
        return {"skipped": "sdk_v2_submit.py failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(runs):
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def bench_watch(server, minutes, scale, jobs, mode):
    """Simulated job-minutes of watching `jobs` InProgress jobs; calls per operation per job-minute."""
    from sm_r_magic import api, config
    from sm_r_magic.backends import get_backend
    from sm_r_magic.backends.sagemaker import SageMakerBackend

    server.reset()
    settings = config.set_current(config.RMagic(backend="sagemaker", image=IMAGE, role=ROLE, progress="none"))
    backend = get_backend("sagemaker", settings)
    # compress time: every interval of the backend divided by the scale
    backend.poll_interval = tuple(v / scale for v in SageMakerBackend.poll_interval)
    backend.describe_ttl = SageMakerBackend.describe_ttl / scale
    backend.log_interval = SageMakerBackend.log_interval / scale
    backend.stream_rescan = SageMakerBackend.stream_rescan / scale
    counter = Counter(backend)  # before any client exists: clients copy the session's event handlers
    handles = [api.train(CODE + f"# watch {i}\n", name=f"watch-{i}", wait=False) for i in range(jobs)]
    moto = server.sagemaker()
    logs = server.client("logs")
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    for job in handles:
        moto.training_jobs[job.name].training_job_status = "InProgress"
        moto.training_jobs[job.name].secondary_status = "Training"
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job.name}/algo-1-1")
    backend.forget()
    real = minutes * 60.0 / scale
    stop = threading.Event()

    def writer():  # the jobs keep printing
        i = 0
        while not stop.wait(1.0 / scale * 10):  # every 10 simulated seconds
            for job in handles:
                logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job.name}/algo-1-1",
                                    logEvents=[{"timestamp": int(time.time() * 1000), "message": f"epoch {i}"}])
            i += 1

    def wait_loop(job):
        job.wait(progress="text", timeout=real)

    def ui_loop(job):
        deadline = time.monotonic() + real
        while time.monotonic() < deadline:
            job.describe(), job.poll_logs(), job.status, job.secondary_status
            time.sleep(0.5 / scale)

    sink = io.StringIO()
    old_stdout = sys.stdout
    sys.stdout = sink
    writer_thread = threading.Thread(target=writer, daemon=True)
    writer_thread.start()
    before = counter.snapshot()
    marks = [before]
    threads = [threading.Thread(target=wait_loop if mode == "wait" else ui_loop, args=(job,)) for job in handles]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        minute = 60.0 / scale
        for m in range(1, minutes + 1):  # a snapshot at each simulated minute
            time.sleep(max(0.0, started + m * minute - time.monotonic()))
            marks.append(counter.snapshot())
        for t in threads:
            t.join()
    finally:
        stop.set()
        writer_thread.join()
        sys.stdout = old_stdout
    per_minute = [sum((marks[i + 1] - marks[i]).values()) / jobs for i in range(minutes)]
    total = marks[-1] - marks[0]
    return {
        "mode": mode, "jobs": jobs, "simulated_minutes": minutes, "scale": scale,
        "calls_per_job_minute_each_minute": [round(v, 2) for v in per_minute],
        "calls_per_job_minute_overall": round(sum(total.values()) / jobs / minutes, 2),
        "calls_per_job_minute_after_minute_5": round(statistics.mean(per_minute[5:]), 2) if minutes > 5 else None,
        "by_operation_per_job_minute": {k: round(v / jobs / minutes, 2) for k, v in sorted(total.items())},
        "account_calls_per_second_sim": round(sum(total.values()) / (minutes * 60.0), 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scale", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--minutes", type=int, default=10, help="simulated minutes of watching")
    parser.add_argument("--jobs", type=int, default=20, help="jobs watched at once")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "submit.json"))
    parser.add_argument("--no-sdk", action="store_true", help="skip the SageMaker SDK v2 column")
    parser.add_argument("--round-trip-ms", type=float, default=20.0,
                        help="a second pass with this network round trip added to every AWS request (0: none)")
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = start_moto()
    warm_moto(server)
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        submit = bench_submit(args.repeats, tmp)
    sdk = {"skipped": "--no-sdk"} if args.no_sdk else bench_sdk(args.repeats)
    far = None
    if args.round_trip_ms:
        server.reset()
        with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
            far = bench_submit(args.repeats, tmp, args.round_trip_ms / 1000)
        far_sdk = {"skipped": "--no-sdk"} if args.no_sdk else bench_sdk(args.repeats, args.round_trip_ms / 1000)
    watch = [bench_watch(server, args.minutes, args.scale, args.jobs, mode) for mode in ("wait", "ui")]

    first, repeat = summarize(submit["first"]), summarize(submit["repeat"])
    print(f"\nSubmission, one-file cell + one-file channel, moto on loopback (median of {args.repeats})")
    print(f"{'':10}{'total ms':>10}{'R syntax ms':>13}{'S3 ms':>8}{'Create ms':>11}{'other ms':>10}"
          f"{'AWS calls':>11}")
    for label, row in (("cold", submit["cold"]), ("first", first), ("repeat", repeat)):
        print(f"{label:10}{row['total_s'] * 1000:10.1f}{row['syntax_check_s'] * 1000:13.1f}"
              f"{row['staging_s'] * 1000:8.1f}{row['create_s'] * 1000:11.1f}{row['other_s'] * 1000:10.1f}"
              f"{row['api_calls']:11.0f}")
    if "skipped" in sdk:
        print(f"SageMaker SDK v2 Estimator.fit(wait=False): skipped ({sdk['skipped']})")
    else:
        sdk["first_median_s"] = statistics.median(sdk["first"])
        sdk["ratio_to_sm_r_magic_first"] = sdk["first_median_s"] / first["total_s"]
        print(f"SageMaker SDK {sdk['sagemaker_version']} Estimator.fit(wait=False), same job, same moto: "
              f"first {sdk['first_median_s'] * 1000:.1f} ms ({len(sdk['first_calls'])} AWS calls: "
              f"{', '.join(sdk['first_calls'])}), cold {sdk['cold'] * 1000:.0f} ms")
        print(f"sm-r-magic first submission is {sdk['ratio_to_sm_r_magic_first']:.1f}x faster than the SDK's")
        sdk["ratio_ceiling"] = sdk["first_median_s"] / first["create_s"]
        print(f"ceiling here: a client that made only the CreateTrainingJob request ({first['create_s'] * 1000:.1f} ms)"
              f" would be {sdk['ratio_ceiling']:.1f}x faster than the SDK's")
    if far is not None:
        far_first, far_repeat = summarize(far["first"]), summarize(far["repeat"])
        print(f"\nThe same with {args.round_trip_ms:g} ms of network round trip added to every AWS request, as from a "
              f"notebook to its region (median of {args.repeats})")
        line = (f"sm-r-magic first {far_first['total_s'] * 1000:.1f} ms ({far_first['api_calls']:.0f} AWS calls), "
                f"repeat {far_repeat['total_s'] * 1000:.1f} ms ({far_repeat['api_calls']:.0f} AWS calls)")
        if "skipped" not in far_sdk:
            far_sdk["first_median_s"] = statistics.median(far_sdk["first"])
            far_sdk["ratio_to_sm_r_magic_first"] = far_sdk["first_median_s"] / far_first["total_s"]
            line += (f"; SDK v2 {far_sdk['first_median_s'] * 1000:.1f} ms: sm-r-magic is "
                     f"{far_sdk['ratio_to_sm_r_magic_first']:.1f}x faster")
        print(line)
    print(f"\nWatching {args.jobs} InProgress jobs for {args.minutes} simulated minutes (time x{args.scale:g})")
    print(f"{'watcher':8}{'calls/job-min':>15}{'after min 5':>13}{'account calls/s':>17}  by operation (per job-minute)")
    for row in watch:
        ops = ", ".join(f"{k} {v}" for k, v in row["by_operation_per_job_minute"].items())
        print(f"{row['mode']:8}{row['calls_per_job_minute_overall']:15.2f}"
              f"{row['calls_per_job_minute_after_minute_5'] or 0:13.2f}{row['account_calls_per_second_sim']:17.3f}  {ops}")
        print(f"{'':8}each minute: {row['calls_per_job_minute_each_minute']}")

    result = {"submit": {"cold": submit["cold"], "first_median": first, "repeat_median": repeat,
                         "first_runs": submit["first"], "repeat_runs": submit["repeat"],
                         "rscript_syntax_check": submit["rscript"]},
              "sdk_v2": sdk, "watch": watch,
              "with_round_trip": None if far is None else {
                  "round_trip_ms": args.round_trip_ms, "first_median": far_first, "repeat_median": far_repeat,
                  "sdk_v2": far_sdk}, "moto": "5.2.5 ThreadedMotoServer on 127.0.0.1",
              "python": sys.version.split()[0]}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"\nwritten to {os.path.relpath(args.out)}")
    from tests.support.moto_server import stop_server

    stop_server()


if __name__ == "__main__":
    main()
