"""Docker benchmark: the shared image and the docker backend against the local backend.

    python benchmarks/bench_docker.py [--skip-cold] [--reps N] [--json PATH]

Measures
  * image size of sm-r-magic:latest (after a cached build from the package's container folder),
  * build time: cold (`--no-cache`, every apt package downloaded and installed again; the base image is
    reused) into a throw-away tag, and cached (nothing changed: every layer from the cache),
  * container start to the first `GET /ping` 200: `docker run -d -p 127.0.0.1::8080 IMAGE serve` with an
    lm(mpg ~ wt + hp) model mounted at /opt/ml/model (median of --reps),
  * job overhead: submit -> Completed of a trivial training job (`cat(1)`) on the local backend (this
    machine's Rscript) and on the docker backend (median of --reps; both include the detached runner).
Prints a Markdown table and writes JSON (default benchmarks/results/docker.json). Needs a Docker engine
(scripts/ensure-docker.sh) and a base image (`make image`). Every container and tag made here is removed here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sm_r_magic import image  # noqa: E402

IMAGE = "sm-r-magic:latest"
COLD_TAG = "sm-r-magic:bench-cold"


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def build(tag, no_cache=False):
    result = image.build_image(tag, no_cache=no_cache, out=None)
    return result.seconds, result.size_bytes


def start_to_ping(model_dir, reps):
    times = []
    for i in range(reps):
        name = f"smr-bench-ping-{os.getpid()}-{i}"
        started = time.monotonic()
        docker("run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::8080", "--mount",
               f"type=bind,source={model_dir},target=/opt/ml/model,readonly", IMAGE, "serve")
        try:
            port = None
            while port is None:
                out = docker("port", name, "8080/tcp", check=False).stdout.strip()
                port = out.rsplit(":", 1)[-1] if out else None
            deadline = started + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("no /ping within 60 s: " + docker("logs", name, check=False).stderr[-2000:])
                time.sleep(0.01)
            times.append(time.monotonic() - started)
        finally:
            docker("rm", "-f", name, check=False)
    return times


def job_overhead(backend, reps, root):
    os.environ["SM_R_MAGIC_LOCAL_ROOT"] = str(root)
    from sm_r_magic import api, config

    config.set_current(config.RMagic())
    times = []
    for i in range(reps):
        started = time.monotonic()
        job = api.train(f"cat({i})", backend=backend, name="bench", progress="none")
        assert job.status == "Completed", job.failure_reason
        times.append(time.monotonic() - started)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-cold", action="store_true", help="Skip the --no-cache build (minutes).")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=str(HERE / "results" / "docker.json"))
    args = parser.parse_args()

    results = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "docker_server": docker("version", "--format", "{{.Server.Version}}").stdout.strip()},
               "image": IMAGE}
    # Make sure the image is current first (cached), then time a second cached build.
    build(IMAGE)
    cached_s, size = build(IMAGE)
    results["image_size_mb"] = round(size / 1e6, 1)
    results["build_cached_s"] = round(cached_s, 2)
    results["base_image"] = image.choose_base_image("docker")
    if not args.skip_cold:
        try:
            cold_s, _ = build(COLD_TAG, no_cache=True)
            results["build_cold_s"] = round(cold_s, 1)
        finally:
            docker("rmi", COLD_TAG, check=False)  # and its untagged parent layers

    with tempfile.TemporaryDirectory(prefix="sm-r-magic-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        (model_dir / "code").mkdir(parents=True)
        subprocess.run(["Rscript", "-e", f'saveRDS(lm(mpg ~ wt + hp, mtcars), "{model_dir}/model.rds")'], check=True)
        (model_dir / "code" / "inference.R").write_text(
            'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))\n')
        os.chmod(tmp, 0o755)
        ping = start_to_ping(model_dir, args.reps)
        results["start_to_ping_s"] = {"median": round(statistics.median(ping), 3), "min": round(min(ping), 3),
                                      "max": round(max(ping), 3), "reps": len(ping)}
        overhead = {}
        for backend in ("local", "docker"):
            times = job_overhead(backend, args.reps, Path(tmp) / "root")
            overhead[backend] = {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
                                 "max": round(max(times), 3), "reps": len(times)}
        overhead["docker_minus_local_s"] = round(overhead["docker"]["median"] - overhead["local"]["median"], 3)
        results["job_submit_to_completed_s"] = overhead

    rows = [
        ("image size", f"{results['image_size_mb']:.0f} MB (base {results['base_image']})"),
        ("build, cold (--no-cache; base reused)",
         f"{results['build_cold_s']:.1f} s" if "build_cold_s" in results else "skipped"),
        ("build, cached", f"{results['build_cached_s']:.2f} s"),
        ("container start -> /ping 200 (median)", f"{results['start_to_ping_s']['median']:.2f} s"),
        ("trivial training job, local backend (median)", f"{overhead['local']['median']:.2f} s"),
        ("trivial training job, docker backend (median)", f"{overhead['docker']['median']:.2f} s"),
        ("docker overhead per job", f"{overhead['docker_minus_local_s']:+.2f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for label, value in rows:
        print(f"| {label.ljust(width)} | {value} |")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
