"""Opens N Server-Sent Events streams of one plan on a running server, then times how long
one change (a purchase) takes to reach every stream, several times; prints a JSON report.

Plain asyncio sockets (HTTP/1.1, one connection per stream), so that 10,000 streams cost
the client little. Run by bench/streams.sh, which starts the server and reads its memory.

    python3 bench/streams.py BASE_URL PLAN_ID ADMIN_TOKEN STREAMS ROUNDS
"""

import asyncio
import json
import sys
import time
import urllib.request
from urllib.parse import urlparse


async def open_stream(host, port, path, ready, seen, index):
    """One stream: reads events forever; records when each `seq` arrives."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    first = True
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            seq = json.loads(line[6:])["seq"]
            seen.setdefault(seq, []).append(time.monotonic())
            if first:
                first = False
                ready.release()


def purchase(base, plan, token, key):
    body = json.dumps(
        {"plan_id": plan, "customer_id": f"cus_{key}", "payment_method": "pm_card_visa"}
    ).encode()
    req = urllib.request.Request(
        f"{base}/api/subscriptions/purchase",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    with urllib.request.urlopen(req) as res:
        return res.status


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def main():
    base, plan, token, n, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    url = urlparse(base)
    path = f"/api/plans/{plan}/events"
    ready = asyncio.Semaphore(0)
    seen = {}
    started = time.monotonic()
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(open_stream(url.hostname, url.port, path, ready, seen, i)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    for _ in range(n):
        await asyncio.wait_for(ready.acquire(), timeout=120)
    opened = time.monotonic() - started
    print(json.dumps({"phase": "open", "streams": n, "seconds": round(opened, 2)}), flush=True)
    # The server's memory is read by the caller now.
    await asyncio.sleep(3)
    reports = []
    for r in range(rounds):
        before = set(seen)
        sent = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(
            None, purchase, base, plan, token, f"stream-bench-{r}-{time.time_ns()}"
        )
        deadline = time.monotonic() + 30
        new = None
        while time.monotonic() < deadline:
            fresh = [s for s in seen if s not in before and len(seen[s]) >= n]
            if fresh:
                new = fresh[0]
                break
            await asyncio.sleep(0.01)
        if new is None:
            got = max((len(v) for s, v in seen.items() if s not in before), default=0)
            reports.append({"round": r, "reached": got, "of": n})
            continue
        lags = [(t - sent) * 1000 for t in seen[new]]
        reports.append(
            {
                "round": r,
                "reached": len(lags),
                "p50_ms": round(percentile(lags, 50), 1),
                "p99_ms": round(percentile(lags, 99), 1),
                "max_ms": round(max(lags), 1),
            }
        )
        await asyncio.sleep(1)
    print(json.dumps({"phase": "fan-out", "rounds": reports}), flush=True)
    for t in tasks:
        t.cancel()


asyncio.run(main())
