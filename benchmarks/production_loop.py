"""The production loop on loopback: publish→all-replicas latency, served latency across two
replicas, and label-join lag.

Parts: librdkafka's mock Kafka cluster, ``redis-server``, the update service (``workbench
learner``) and two replicas (``workbench serve --store redis://...``, logging every prediction
to the predictions topic), each a process of its own, all sharing the 2 cores with ``hey``.

1. publish→all replicas: labels stream in; the update service publishes a version every 50
   updates; each replica reports when it swapped to each version (``/version``). The latency of
   a version is from its publish to the *last* replica serving it (target p95 < 1 s).
2. served p95 at 1,000 req/s across the two replicas (500 each, with `hey`), beside a no-op
   raw-ASGI endpoint at 1,000 req/s in the same run (target p95 < 10 ms).
3. label-join lag: requests with ids, then their labels; the update service's histogram of
   label arrival → joined with the served prediction.

    python benchmarks/production_loop.py [--seconds 10] [--labels 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from multiprocessing import Process
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from kafka_mock import MockCluster  # noqa: E402
from production import Part, Producer, Redis, deploy_config, free_port, make_bundle, stream, wait_for  # noqa: E402
from serve_load import hey, noop_server  # noqa: E402


def get(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def histogram(metrics_url: str, name: str) -> tuple[float, float, int]:
    """(mean, p95 estimated from the buckets, count) of a Prometheus histogram."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    buckets, total, count = [], 0.0, 0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count = int(float(line.rsplit(" ", 1)[1]))
    p95 = next((le for le, n in buckets if count and n >= 0.95 * count), float("nan"))
    return (total / count if count else float("nan")), p95, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--labels", type=int, default=1500)
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_SIGNING_KEY", secrets.token_hex(32))  # bundles and versions are signed
    folder = Path(tempfile.mkdtemp(prefix="workbench-production-bench-"))
    bundle = make_bundle(folder)
    redis = Redis()
    parts: list[Part] = []
    try:
        with MockCluster() as kafka:
            for topic in ("events", "labels", "predictions"):
                kafka.create_topic(topic, 1)
            ports = [free_port(), free_port()]
            metrics_port = free_port()
            cfg = deploy_config(
                bundle,
                kafka.bootstrap,
                redis.url,
                folder / "live.duckdb",
                metrics_port=metrics_port,
                checkpoints={"every": 50, "seconds": 60},
            )
            (folder / "deploy.yaml").write_text(yaml.safe_dump(cfg))
            log = folder / "parts.log"
            parts.append(Part("learner", str(folder / "deploy.yaml"), log=log))
            for port in ports:
                parts.append(
                    Part(
                        "serve",
                        "--store",
                        redis.url,
                        "--port",
                        str(port),
                        "--predictions-topic",
                        "predictions",
                        "--bootstrap-servers",
                        kafka.bootstrap,
                        log=log,
                    )
                )
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

            def up() -> bool:
                try:
                    return all(get(u + "/health")["status"] == "ok" for u in urls)
                except OSError:
                    return False

            wait_for(up, 180, 0.2, "two replicas")
            producer = Producer(kafka.bootstrap)
            data = stream(args.labels)
            for i, x, _ in data:
                producer.event(i, x)
            producer.flush()

            # 1. publish → all replicas, over the versions the update service publishes
            for i, _, y in data:
                producer.label(i, y)
                if i % 50 == 49:
                    producer.flush()
                    time.sleep(0.1)
            producer.flush()
            last = 1 + args.labels // 50
            wait_for(lambda: all(str(last) in get(u + "/version")["swaps"] for u in urls), 60, 0.2, "last version")
            swaps = [get(u + "/version")["swaps"] for u in urls]
            latency = []
            for version, first in swaps[0].items():
                if first["published_at"] is None or not all(version in s for s in swaps[1:]):
                    continue
                latency.append(max(s[version]["swapped_at"] for s in swaps) - first["published_at"])
            latency = np.array(latency) * 1000
            print(
                f"publish → all 2 replicas over {len(latency)} versions: p50 {np.percentile(latency, 50):.1f} ms, "
                f"p95 {np.percentile(latency, 95):.1f} ms, max {latency.max():.1f} ms (target p95 < 1000 ms): "
                f"ratio p95/target {np.percentile(latency, 95) / 1000:.3f}"
            )

            # 2. served p95 at 1,000 req/s across the replicas, and a no-op endpoint beside it
            body = folder / "predict.json"
            body.write_text(json.dumps({"features": data[0][1]}))
            results: list[dict] = [{}, {}]

            def load(i: int) -> None:
                results[i] = hey(urls[i] + "/predict", body, args.seconds, 500, 10)

            threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            noop_port = free_port()
            noop = Process(target=noop_server, args=(noop_port,), daemon=True)
            noop.start()
            wait_for(lambda: _answers(f"http://127.0.0.1:{noop_port}/"), 30, 0.1, "no-op endpoint")
            floor = hey(f"http://127.0.0.1:{noop_port}/", body, args.seconds, 1000, 20)
            noop.terminate()
            served_p95 = max(r["p95"] for r in results)
            rps = sum(r["rps"] for r in results)
            print(
                f"served at {rps:,.0f} req/s across 2 replicas (500 each, predictions logged to Kafka): "
                f"p50 {max(r['p50'] for r in results):.2f} ms, p95 {served_p95:.2f} ms (target < 10 ms); "
                f"no-op raw ASGI at 1,000 req/s: p95 {floor['p95']:.2f} ms; ratio served/no-op p95 "
                f"{served_p95 / floor['p95']:.2f}"
            )

            # 3. label-join lag: requests with ids, then their labels
            _, _, before = histogram(metrics_url, "workbench_label_join_lag_seconds")
            fresh = stream(300, seed=21, start=1_000_000)
            for n, (i, x, _) in enumerate(fresh):
                producer.event(i, x)
                post(urls[n % 2] + "/predict", {"features": x, "id": i})
            producer.flush()
            time.sleep(1.0)
            for i, _, y in fresh:
                producer.label(i, y)
                producer.producer.poll(0)
                time.sleep(0.002)
            producer.flush()
            wait_for(
                lambda: histogram(metrics_url, "workbench_label_join_lag_seconds")[2] >= before + len(fresh),
                60,
                0.2,
                "labels joined",
            )
            mean, p95, count = histogram(metrics_url, "workbench_label_join_lag_seconds")
            update_mean, update_p95, _ = histogram(metrics_url, "workbench_update_latency_seconds")
            print(
                f"label-join lag (label on its topic → joined with the served prediction) over {count:,} "
                f"labels: mean {mean * 1000:.1f} ms, p95 ≤ {p95 * 1000:.0f} ms (histogram bucket); "
                f"label → learned: mean {update_mean * 1000:.1f} ms, p95 ≤ {update_p95 * 1000:.0f} ms "
                "(alert above 100 ms)"
            )
    finally:
        for part in parts:
            part.stop()
        redis.stop()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}"), timeout=1).read()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
