"""Serving benchmark: the container's serve mode (a Python front, persistent R workers) against the seed's plumber app.

    python benchmarks/bench_serving.py [--requests N] [--duration S] [--workers 1,2] [--json PATH]

Trains lm(mpg ~ wt + hp, mtcars) with Rscript into a temporary model folder with a tiny handler program
(model_fn only: the default CSV input, predict() and CSV output), then serves it with
  * `entrypoint.sh serve` for each worker count (the default, number of CPUs, plus 1 and 2), and
  * benchmarks/plumber_baseline.R (plain plumber/httpuv, the seed's approach),
and measures requests/s, p50 and p99 latency of POST /invocations (one CSV row) on kept-alive connections
and with a new connection per request, at concurrency 1 and 8 (Python threads with http.client, loopback
only), and kept-alive at concurrency 1 from a minimal socket client as well (http.client's own request
building and header parsing is ~0.1-0.2 ms of each request it times). Side by side: every server runs at once and each scenario is measured in --rounds short rounds that
take the servers in turn (a rotating order), so a change in the machine's load hits all of them alike; each
server's share of a scenario is bounded by --requests and --duration. Also records each server's start-up (exec to the
first 200 on /ping; the median of 3 starts). Prints a Markdown table and the speed goals (issue 12, goal 3) checked against plumber in
this run: ahead of plumber on every row, at least 1.5x plumber's requests/s with a new connection per request
(c=1 and c=8), kept-alive c=1 p50 <= 1 ms (with either client). Writes JSON.
Every server is started here and stopped here by PID (SIGTERM, then SIGKILL), also on error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRYPOINT = HERE.parent / "sm_r_magic" / "container" / "entrypoint.sh"
PLUMBER_BASELINE = HERE / "plumber_baseline.R"
BODY = b"wt,hp\n2.5,120\n"
HANDLER = 'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.cmd, self.env, self.port, self.log = name, cmd, env, port, log
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None  # from exec to the first 200 on /ping

    def start(self, timeout: float = 60) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    conn.close()
                    self.start_seconds = round(time.monotonic() - started, 3)
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not answer /ping within {timeout} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        children = child_pids(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_load(port: int, concurrency: int, keep_alive: bool, max_requests: int, duration: float) -> dict:
    """concurrency threads send POST /invocations until max_requests in total or duration seconds."""
    lock = threading.Lock()
    state = {"sent": 0, "errors": 0}
    latencies: list[float] = []
    deadline = time.monotonic() + duration
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}

    def take() -> bool:
        with lock:
            if state["sent"] >= max_requests or time.monotonic() >= deadline:
                return False
            state["sent"] += 1
            return True

    def worker():
        own: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30) if keep_alive else None
        while take():
            started = time.perf_counter()
            try:
                c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/invocations", body=BODY, headers=headers)
                response = c.getresponse()
                response.read()
                if not keep_alive:
                    c.close()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
                own.append(time.perf_counter() - started)
            except Exception:
                with lock:
                    state["errors"] += 1
                if conn is not None:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    return {"latencies": latencies, "errors": state["errors"], "seconds": time.perf_counter() - started}


def run_lean_load(port: int, max_requests: int, duration: float) -> dict:
    """Kept-alive c=1 from a minimal HTTP/1.1 client (one socket, TCP_NODELAY, one sendall per request, the
    response read by its Content-Length): what the server and loopback take, without http.client's own
    ~0.1-0.2 ms of request building and header parsing per request."""
    request = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nAccept: text/csv\r\n"
               b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
    latencies: list[float] = []
    errors = 0
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    deadline = time.monotonic() + duration
    try:
        while len(latencies) + errors < max_requests and time.monotonic() < deadline:
            t = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
            while len(rest) < length:
                rest += sock.recv(65536)
            if lines[0].split()[1] == b"200":
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1
    finally:
        sock.close()
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - started}


def summarize(parts: list[dict]) -> dict:
    """One row from the rounds of one server and scenario: requests/s over the rounds' total time, percentiles
    over all their latencies."""
    latencies = sorted(lat for part in parts for lat in part["latencies"])
    seconds = sum(part["seconds"] for part in parts)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {"requests": len(latencies), "errors": sum(part["errors"] for part in parts), "seconds": round(seconds, 3),
            "req_per_s": round(len(latencies) / seconds, 1) if seconds else None, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99)}


def check_goals(results: list[dict]) -> dict:
    """Issue 12 goal 3, from this run's rows: {"met": {goal: bool}, "lines": printable verdicts}."""
    plumber = {(r["connection"], r["concurrency"]): r for r in results if r["server"].startswith("plumber")}
    ours = [r for r in results if not r["server"].startswith("plumber")]
    if not plumber or not ours:
        return {"met": {}, "lines": ["(goals not checked: plumber or sm-r-magic rows missing)"]}
    met, lines = {}, ["", "Goals (issue 12, goal 3), this run:"]

    def ratio(r):
        base = plumber.get((r["connection"], r["concurrency"]))
        return r["req_per_s"] / base["req_per_s"] if base and base["req_per_s"] and r["req_per_s"] else 0.0

    met["ahead_on_every_row"] = all(ratio(r) > 1 for r in ours)
    lines.append(f"  ahead of plumber on every row: {met['ahead_on_every_row']} "
                 f"(lowest ratio {min(ratio(r) for r in ours):.2f}x)")
    fresh = [r for r in ours if r["connection"] == "new per request"]
    met["new_connection_1_5x"] = all(ratio(r) >= 1.5 for r in fresh)
    lines.append(f"  >= 1.5x plumber with a new connection per request: {met['new_connection_1_5x']} ("
                 + ", ".join(f"{r['workers']}w c={r['concurrency']}: {ratio(r):.2f}x" for r in fresh) + ")")
    kept = [r for r in ours if r["connection"] == "kept-alive" and r["concurrency"] == 1]
    met["kept_alive_p50_1ms"] = all(r["p50_ms"] is not None and r["p50_ms"] <= 1.0 for r in kept)
    lines.append(f"  kept-alive c=1 p50 <= 1 ms (http.client): {met['kept_alive_p50_1ms']} ("
                 + ", ".join(f"{r['workers']}w: {r['p50_ms']} ms" for r in kept) + ")")
    lean = [r for r in ours if r["connection"] == "kept-alive, minimal client"]
    if lean:
        met["kept_alive_p50_1ms_minimal_client"] = all(r["p50_ms"] is not None and r["p50_ms"] <= 1.0 for r in lean)
        lines.append(f"  kept-alive c=1 p50 <= 1 ms (minimal client): {met['kept_alive_p50_1ms_minimal_client']} ("
                     + ", ".join(f"{r['workers']}w: {r['p50_ms']} ms" for r in lean) + ")")
    return {"met": met, "lines": lines}


def train(folder: Path) -> Path:
    model_dir = folder / "model"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.R").write_text(HANDLER)
    subprocess.run(["Rscript", "-e", f"saveRDS(lm(mpg ~ wt + hp, data = mtcars), '{model_dir}/model.rds')"],
                   check=True, capture_output=True, timeout=120)
    return model_dir / "model.rds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="at most this many requests per scenario")
    parser.add_argument("--duration", type=float, default=4.0, help="at most this many seconds per scenario and server")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per scenario, taking the servers in turn")
    parser.add_argument("--workers", default=None,
                        help="comma-separated SM_R_MAGIC_WORKERS values (default: the CPU count, 1 and 2)")
    parser.add_argument("--json", default=str(HERE / "results" / "serving.json"), help="where to write results")
    parser.add_argument("--no-plumber", action="store_true", help="skip the plumber baseline")
    args = parser.parse_args(argv)
    if shutil.which("Rscript") is None:
        print("Rscript is not installed", file=sys.stderr)
        return 2
    cpus = os.cpu_count() or 1
    if args.workers:
        worker_counts = [int(w) for w in args.workers.split(",")]
    else:
        worker_counts = sorted({cpus, 1, 2})
    # (connection, concurrency, load(port, max_requests, duration) -> {"latencies", "errors", "seconds"})
    scenarios = [(("kept-alive" if keep_alive else "new per request"), concurrency,
                  lambda port, n, secs, k=keep_alive, c=concurrency: run_load(port, c, k, n, secs))
                 for keep_alive, concurrency in [(True, 1), (True, 8), (False, 1), (False, 8)]]
    scenarios.append(("kept-alive, minimal client", 1, run_lean_load))

    results: list[dict] = []
    start_up: dict[str, float | None] = {}
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="sm-r-magic-bench-") as tmp:
        tmp_path = Path(tmp)
        model_rds = train(tmp_path / "root")
        configs = []
        for workers in worker_counts:
            port = free_port()
            # the front runs on this Python, as the local backend runs it (SM_R_MAGIC_PYTHON)
            env = {**os.environ, "SM_R_MAGIC_ROOT": str(tmp_path / "root"), "SAGEMAKER_BIND_TO_PORT": str(port),
                   "SM_R_MAGIC_BIND_HOST": "127.0.0.1", "SM_R_MAGIC_WORKERS": str(workers),
                   "SM_R_MAGIC_PYTHON": sys.executable}
            for name in ("SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_PROGRAM", "SM_R_MAGIC_MODEL_DATA"):
                env.pop(name, None)
            label = f"sm-r-magic serve, {workers} worker{'s' if workers > 1 else ''}"
            if workers == cpus:
                label += " (default)"
            configs.append((Server(label, [str(ENTRYPOINT), "serve"], env, port, tmp_path / f"serve-{workers}.log"),
                            workers))
        if not args.no_plumber:
            port = free_port()
            configs.append((Server("plumber (seed baseline)", ["Rscript", str(PLUMBER_BASELINE), str(model_rds),
                                                              str(port)], dict(os.environ), port,
                                   tmp_path / "plumber.log"), 1))
        try:
            for server, workers in configs:
                servers.append(server)
                starts = []
                for attempt in range(3):
                    if attempt:
                        server.stop()
                    server.start()
                    starts.append(server.start_seconds)
                start_up[server.name] = sorted(starts)[1]
                print(f"  {server.name:48s} start-up (exec to /ping): {start_up[server.name]} s (of {starts})",
                      file=sys.stderr)
                run_load(server.port, 2, True, 40, 2.0)   # warm-up, not counted
            parts = {(server.name, connection, concurrency): [] for server, _ in configs
                     for connection, concurrency, _ in scenarios}
            for connection, concurrency, load in scenarios:
                for round_index in range(args.rounds):
                    turn = round_index % len(configs)
                    for server, _ in configs[turn:] + configs[:turn]:
                        parts[(server.name, connection, concurrency)].append(load(
                            server.port, max(1, args.requests // args.rounds), args.duration / args.rounds))
            for server, workers in configs:
                for connection, concurrency, _ in scenarios:
                    row = summarize(parts[(server.name, connection, concurrency)])
                    row.update(server=server.name, workers=workers, concurrency=concurrency, connection=connection)
                    results.append(row)
                    print(f"  {server.name:48s} {row['connection']:16s} c={concurrency}: "
                          f"{row['req_per_s']} req/s, p50 {row['p50_ms']} ms", file=sys.stderr, flush=True)
        finally:
            for server in servers:
                server.stop()

    lines = ["| server | connection | concurrency | requests | req/s | p50 ms | p99 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['server']} | {r['connection']} | {r['concurrency']} | {r['requests']} | {r['req_per_s']} "
                     f"| {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |")
    lines.append("")
    lines.append("Start-up, exec to the first 200 on /ping: " + "; ".join(f"{name} {secs} s"
                                                                         for name, secs in start_up.items()))
    table = "\n".join(lines)
    print(table)
    baseline = {(r["connection"], r["concurrency"]): r for r in results if r["server"].startswith("plumber")}
    summary = []
    for r in results:
        base = baseline.get((r["connection"], r["concurrency"]))
        if base and base["req_per_s"] and r is not base and r["req_per_s"]:
            summary.append({"server": r["server"], "connection": r["connection"], "concurrency": r["concurrency"],
                            "speedup_vs_plumber": round(r["req_per_s"] / base["req_per_s"], 2)})
    goals = check_goals(results)
    for line in goals["lines"]:
        print(line)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version()},
        "settings": {"requests": args.requests, "duration_s": args.duration, "rounds": args.rounds,
                     "body": BODY.decode()},
        "results": results, "start_up_s": start_up, "speedup_vs_plumber": summary, "goals": goals["met"],
        "markdown": table,
    }, indent=2) + "\n")
    print(f"\nresults written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
