"""`make bench`: every benchmark in turn; each prints a table and writes benchmarks/results/*.json."""

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    ["bench_local.py"],
    ["bench_serving.py"],
    ["bench_submit.py"],
    ["bench_pipeline.py"],
    ["bench_docker.py", "--skip-cold"],
]


def main():
    failed = []
    for bench in BENCHES:
        print(f"\n## {bench[0]}\n", flush=True)
        if bench[0] == "bench_docker.py" and (not shutil.which("docker") or
                                              subprocess.run(["docker", "info"], capture_output=True).returncode):
            print("skipped: no Docker engine (make docker-up)")
            continue
        if subprocess.run([sys.executable, str(HERE / bench[0]), *bench[1:]]).returncode:
            failed.append(bench[0])
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
