"""Serving latency and throughput on loopback: a served demo bundle vs a no-op endpoint floor.

The demo experiment (StandardScaler | LogisticRegression on Agrawal) is replayed, its learner
exported and served with `workbench serve` (uvicorn, uvloop, httptools). In the same run, with
the same load tool, the same server stack answers from a no-op raw-ASGI endpoint (the floor) and
a no-op FastAPI endpoint: the machine is shared and noisy, so only figures measured side by side
mean anything. Load comes from `hey` (Debian: `apt-get install hey`), which shares the 2 cores.

It prints, each with its target:
1. single predictions at --rate requests/s from --clients concurrent clients (`hey -c 50 -q 20`):
   p95 of /predict over p95 of the no-op raw-ASGI floor (target <= 2x);
2. big batches beside single predictions: single-prediction p99 alone, then while 2 clients send
   batches of --batch instances unthrottled (target: p99 within 2x of alone), and the 413 a batch
   over --max-batch gets;
3. throughput of batches (target >= 10,000 predictions/s);
4. multi-process serving of the predict path (`--workers N --read-only`): the highest of
   --ladder rates each server holds at p95 < 10 ms, and that rate per core of CPU the server
   used (its processes' CPU time from /proc, so hey's share of the cores is not counted).

Sections 1 and 2 take turns over --rounds rounds and print the median of the rounds' ratios (the
machine is shared: a single figure can be off by 2x).

    python benchmarks/serve_load.py [--seconds 5] [--rounds 5] [--rate 1000] [--clients 50] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fastapi import FastAPI, Request, Response

import workbench as wb
from workbench.config import load as load_config
from workbench.sources import open_source

ROOT = Path(__file__).resolve().parent.parent


async def noop_asgi(scope, receive, send) -> None:
    """A raw-ASGI endpoint that reads the body and answers '{}': the floor of the stack."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


def noop_server(port: int) -> None:
    """Both no-op endpoints in one uvicorn: /fastapi goes to FastAPI, anything else is raw."""
    import uvicorn

    api = FastAPI()

    @api.post("/fastapi")
    async def noop(request: Request) -> Response:
        await request.body()
        return Response(b"{}", media_type="application/json")

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/fastapi":
            return await api(scope, receive, send)
        return await noop_asgi(scope, receive, send)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}"), timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answers (a 422 to an empty body is an answer)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within 60 s")


def hey(url: str, body: Path, seconds: float, rate: int | None, workers: int) -> dict[str, float]:
    """Run hey; ``rate`` is the total requests/s (None: as fast as it can)."""
    command = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(workers),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body),
    ]
    if rate is not None:
        command += ["-q", f"{rate / workers:g}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    if set(codes) != {"200"}:
        raise SystemExit(f"{url}: answers other than 200: {codes}\n{out}")
    figures = {f"p{p}": float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    figures["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return figures


def demo_bundle(folder: Path, n: int) -> tuple[Path, dict]:
    """The demo experiment, shortened, and its logistic regression exported."""
    run = wb.run(
        ROOT / "experiments" / "agrawal_drifts.yaml",
        db=folder / "runs.duckdb",
        progress=False,
        overrides=[f"source.n={n}", "source.drifts=[]"],
    )
    # the server started next inherits the key the bundle is signed with
    os.environ.setdefault("WORKBENCH_SIGNING_KEY", secrets.token_hex(32))
    bundle = wb.export(run, "logreg", folder / "bundle")
    # the features of a real event of the stream, as a client would send them
    config = load_config(bundle / "config.yaml")
    event = next(iter(open_source(config.source, config.seed).events(lambda _: None)))
    return bundle, event.x


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def serve_command(bundle: Path, port: int, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", "serve", str(bundle), "--port", str(port),
            "--state-dir", str(state), *extra]  # fmt: skip


def show(name: str, f: dict[str, float]) -> None:
    print(
        f"  {name:34s} achieved {f['rps']:8,.1f} req/s  p50 {f['p50']:6.2f} ms  "
        f"p95 {f['p95']:6.2f} ms  p99 {f['p99']:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="seconds of load per figure")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the interleaved comparisons")
    parser.add_argument("--rate", type=int, default=1000, help="single predictions per second")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (hey -c)")
    parser.add_argument("--batch", type=int, default=1000, help="records per batch request")
    parser.add_argument("--workers", type=int, default=2, help="processes of the multi-process server")
    parser.add_argument("--ladder", type=int, nargs="+", default=[1000, 2000, 3000, 4000, 5000, 6000])
    parser.add_argument("--ladder-rounds", type=int, default=3, help="rounds per rate of the ladder")
    parser.add_argument("--noop-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_server:
        return noop_server(args.noop_server)
    if shutil.which("hey") is None:
        raise SystemExit("this benchmark drives load with `hey`: apt-get install hey")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bundle, x = demo_bundle(folder, 5000)
        single, batch, too_big = folder / "single.json", folder / "batch.json", folder / "big.json"
        single.write_text(json.dumps({"features": x}))
        batch.write_text(json.dumps({"instances": [x] * args.batch}))
        too_big.write_text(json.dumps({"instances": [x] * (args.batch + 1)}))
        serve_port, noop_port, multi_port = free_port(), free_port(), free_port()
        max_batch = ("--max-batch", str(args.batch))
        servers = [
            start(serve_command(bundle, serve_port, folder / "state", *max_batch)),
            start([sys.executable, __file__, "--noop-server", str(noop_port)]),
        ]
        try:
            wait_for(f"http://127.0.0.1:{serve_port}/predict", servers[0])
            wait_for(f"http://127.0.0.1:{noop_port}/", servers[1])
            predict = f"http://127.0.0.1:{serve_port}/predict"
            print(
                "bundle: StandardScaler | LogisticRegression on Agrawal (9 features); "
                f"load: hey, {args.seconds:g} s per figure, sharing the {os.cpu_count()} cores"
            )
            print(f"1. single predictions at {args.rate:,} req/s, {args.clients} clients ({args.rounds} rounds):")
            targets = {
                "noop raw ASGI (floor)": f"http://127.0.0.1:{noop_port}/",
                "noop FastAPI": f"http://127.0.0.1:{noop_port}/fastapi",
                "predict (one record)": predict,
            }
            ratios = []
            for r in range(args.rounds):
                names = list(targets)[r % 3 :] + list(targets)[: r % 3]  # each goes first in turn
                figures = {name: hey(targets[name], single, args.seconds, args.rate, args.clients) for name in names}
                for name in targets:
                    show(f"round {r + 1}: {name}", figures[name])
                ratios.append(figures["predict (one record)"]["p95"] / figures["noop raw ASGI (floor)"]["p95"])
            ratio = statistics.median(ratios)
            print(
                f"  p95 predict / floor, median of rounds = {ratio:.2f}x "
                f"({', '.join(f'{x:.2f}' for x in ratios)}; target <= 2x): {'met' if ratio <= 2 else 'MISSED'}"
            )

            print(f"2. single predictions at 200 req/s (10 clients), alone and beside batches of {args.batch}:")
            stalls, worst = [], 0.0
            for r in range(args.rounds):
                alone = hey(predict, single, args.seconds, 200, 10)
                load = start(["hey", "-z", f"{args.seconds + 2:g}s", "-c", "2", "-m", "POST", "-T",
                              "application/json", "-D", str(batch), predict])  # fmt: skip
                time.sleep(1)
                beside = hey(predict, single, args.seconds, 200, 10)
                load.wait()
                show(f"round {r + 1}: alone", alone)
                show(f"round {r + 1}: beside 2 clients of batches", beside)
                stalls.append(beside["p99"] / alone["p99"])
                worst = max(worst, beside["p99"])
            stall = statistics.median(stalls)
            ok = stall <= 2
            print(
                f"  p99 beside / alone, median of rounds = {stall:.2f}x "
                f"({', '.join(f'{x:.2f}' for x in stalls)}; target <= 2x): {'met' if ok else 'MISSED'}; "
                f"worst p99 beside batches {worst:.1f} ms"
            )
            status, detail = post(predict, too_big.read_bytes())
            print(f"  a batch of {args.batch + 1:,}: HTTP {status} {detail}")

            f = hey(predict, batch, args.seconds, None, workers=2)
            per_s = f["rps"] * args.batch
            print(
                f"3. batches of {args.batch} unthrottled: {f['rps']:,.1f} req/s = {per_s:,.0f} predictions/s "
                f"(target >= 10,000): {'met' if per_s >= 10_000 else 'MISSED'}"
            )

            multi = ("--read-only", "--workers", str(args.workers))
            servers.append(start(serve_command(bundle, multi_port, folder / "state", *multi)))
            wait_for(f"http://127.0.0.1:{multi_port}/predict", servers[-1])
            print(
                f"4. the highest rate held at p95 < 10 ms ({args.clients} clients; median of "
                f"{args.ladder_rounds} rounds per rate, the two servers taking turns):"
            )
            servers_at = {"1 process": (predict, servers[0].pid)}
            servers_at[f"{args.workers} processes"] = (f"http://127.0.0.1:{multi_port}/predict", servers[-1].pid)
            best: dict[str, tuple] = dict.fromkeys(servers_at, (0, 0.0))
            missed: set[str] = set()
            for rate in args.ladder:
                rounds: dict[str, list] = {name: [] for name in servers_at}
                for _ in range(args.ladder_rounds):
                    for name in [n for n in servers_at if n not in missed]:
                        url, pid = servers_at[name]
                        before = cpu_seconds(pid)
                        f = hey(url, single, args.seconds, rate, args.clients)
                        rounds[name].append((f["p95"], f["rps"], (cpu_seconds(pid) - before) / args.seconds))
                for name, figures in rounds.items():
                    if not figures:
                        continue
                    p95, rps, cores = (statistics.median(column) for column in zip(*figures, strict=True))
                    print(
                        f"  {name:12s} at {rate:5,d} req/s: achieved {rps:7,.0f} req/s, p95 {p95:6.2f} ms, "
                        f"server CPU {cores:4.2f} cores"
                    )
                    if p95 < 10 and rps >= 0.95 * rate:
                        best[name] = (rate, cores)
                    else:
                        missed.add(name)
                if len(missed) == len(servers_at):
                    break
            for name, (rate, cores) in best.items():
                per_core = f"{rate / cores:,.0f} req/s per core of server CPU" if cores else "none held"
                print(f"  {name}: holds {rate:,} req/s at p95 < 10 ms, using {cores:.2f} cores: {per_core}")
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(15)


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()[:200]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()[:200]


if __name__ == "__main__":
    main()
