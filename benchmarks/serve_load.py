"""Serving latency and throughput on loopback: a served demo bundle vs no-op endpoints.

The demo experiment (StandardScaler | LogisticRegression on Agrawal) is replayed, its learner
exported and served with `workbench serve` (uvicorn, uvloop, httptools). In the same run, with
the same load tool, the same server stack answers from a no-op raw-ASGI endpoint and a no-op
FastAPI endpoint: the machine is shared and noisy, so only figures measured side by side mean
anything. Load comes from `hey` (Debian: `apt-get install hey`), which shares the 2 cores.

Targets: p95 < 10 ms for single predictions at 1,000 requests/s; >= 10,000 predictions/s
through the batch endpoint.

    python benchmarks/serve_load.py [--seconds 10] [--rates 200 1000] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--batch", type=int, default=500, help="records per batch request")
    parser.add_argument("--noop-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_server:
        return noop_server(args.noop_server)
    if shutil.which("hey") is None:
        raise SystemExit("this benchmark drives load with `hey`: apt-get install hey")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bundle, x = demo_bundle(folder, 5000)
        single, batch = folder / "single.json", folder / "batch.json"
        single.write_text(json.dumps({"features": x}))
        batch.write_text(json.dumps({"instances": [x] * args.batch}))
        serve_port, noop_port = free_port(), free_port()
        servers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workbench.cli",
                    "serve",
                    str(bundle),
                    "--port",
                    str(serve_port),
                    "--state-dir",
                    str(folder / "state"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            subprocess.Popen(
                [sys.executable, __file__, "--noop-server", str(noop_port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        ]
        try:
            wait_for(f"http://127.0.0.1:{serve_port}/predict", servers[0])
            wait_for(f"http://127.0.0.1:{noop_port}/", servers[1])
            targets = {
                "noop raw ASGI": f"http://127.0.0.1:{noop_port}/",
                "noop FastAPI": f"http://127.0.0.1:{noop_port}/fastapi",
                "predict (one record)": f"http://127.0.0.1:{serve_port}/predict",
            }
            print(
                "bundle: StandardScaler | LogisticRegression on Agrawal (9 features); "
                f"load: hey, {args.seconds:g} s per figure, sharing the cores"
            )
            p95 = {}
            for rate in args.rates:
                for name, url in targets.items():
                    f = hey(url, single, args.seconds, rate, workers=max(10, rate // 50))
                    p95[name, rate] = f["p95"]
                    print(
                        f"{name:22s} at {rate:5,d} req/s: achieved {f['rps']:8,.1f} req/s  "
                        f"p50 {f['p50']:6.2f} ms  "
                        f"p95 {f['p95']:6.2f} ms  p99 {f['p99']:6.2f} ms"
                    )
                print(
                    f"  p95 predict / noop raw ASGI at {rate:,} req/s: "
                    f"{p95['predict (one record)', rate] / p95['noop raw ASGI', rate]:.2f}x"
                )
            f = hey(f"http://127.0.0.1:{serve_port}/predict", batch, args.seconds, None, workers=2)
            per_s = f["rps"] * args.batch
            print(
                f"predict (batches of {args.batch}) unthrottled: {f['rps']:,.1f} req/s = "
                f"{per_s:,.0f} predictions/s  "
                f"p50 {f['p50']:.1f} ms  p95 {f['p95']:.1f} ms"
            )
            top = max(args.rates)
            ok_latency = p95["predict (one record)", top] < 10
            print(
                f"target p95 < 10 ms at {top:,} req/s: {'met' if ok_latency else 'MISSED'} "
                f"({p95['predict (one record)', top]:.2f} ms)"
            )
            print(
                "target >= 10,000 predictions/s batched: "
                f"{'met' if per_s >= 10_000 else 'MISSED'} ({per_s:,.0f}/s)"
            )
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(15)


if __name__ == "__main__":
    main()
