"""Load generator for the submit benchmark: N keep-alive clients on raw asyncio streams.

Run as its own process (``python -m bench.submit_load CONFIG_JSON OUT_PATH``) so that its
CPU use is separate from, and measurable apart from, the bench driver's; it writes one
JSON object with the results to ``OUT_PATH`` (a file, not stdout: an event loop may leave
stdout non-blocking, and a large write to a pipe could then be cut short).

Why not httpx: at 1,000 requests/s an httpx client costs several hundred microseconds
of CPU per request, which on a 2-core machine is CPU taken from the server under test.
This client writes one pre-built HTTP/1.1 request per call and reads the response by
``Content-Length`` (the server under test always sends one), nothing more.

Each client is closed-loop: it sends a request, waits for the whole response, checks it,
then sends the next. Latency is taken from just before the request is written to just
after the last byte of the body is read. A response counts as accepted only if it is a
201 whose JSON body has an integer ``id`` and ``state == "pending"``; anything else
(another status, a bad body, a dropped connection) is counted as an error, and a client
whose connection broke reconnects and goes on. Each measured request carries a fresh
``Idempotency-Key``, as a careful client would send.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Config:
    """What to send, where, and how much."""

    host: str
    port: int
    token: str
    clients: int = 16
    per_client: int = 250
    warmup_per_client: int = 10


@dataclass
class Tally:
    """One client's results."""

    latencies_s: list[float] = field(default_factory=list)
    sent_at_s: list[float] = field(default_factory=list)  # perf_counter at each send
    ids: list[int] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def _request(cfg: Config, body: bytes, key: str | None) -> bytes:
    lines = [
        "POST /v1/jobs HTTP/1.1",
        f"Host: {cfg.host}:{cfg.port}",
        f"Authorization: Bearer {cfg.token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if key is not None:
        lines.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


def _accepted(status: int, body: bytes) -> int | None:
    """The job id of a well-formed 201, else None."""
    if status != 201:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    job_id = doc.get("id")
    if not isinstance(job_id, int) or doc.get("state") != "pending":
        return None
    return job_id


async def _client(n: int, cfg: Config, go: asyncio.Event, ready: list[int]) -> Tally:
    tally = Tally()
    body = json.dumps(
        {"gpus": 1, "gpu_class": "h100", "command": "true", "name": f"bench-{n}"}
    ).encode()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(key: str | None) -> tuple[int, bytes]:
        nonlocal conn
        if conn is None:
            conn = await asyncio.open_connection(cfg.host, cfg.port)
        reader, writer = conn
        try:
            writer.write(_request(cfg, body, key))
            return await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            writer.close()
            conn = None
            return 0, b""

    for _ in range(cfg.warmup_per_client):
        await post(None)
    ready[0] += 1
    if ready[0] == cfg.clients:
        go.set()
    await go.wait()
    for _ in range(cfg.per_client):
        key = uuid.uuid4().hex
        t0 = time.perf_counter()
        status, resp = await post(key)
        tally.latencies_s.append(time.perf_counter() - t0)
        tally.sent_at_s.append(t0)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        job_id = _accepted(status, resp)
        if job_id is None:
            tally.errors += 1
        else:
            tally.ids.append(job_id)
    if conn is not None:
        conn[1].close()
    return tally


async def run_load(cfg: Config) -> dict[str, Any]:
    """Warm up every client, then time all of them from a common start."""
    go = asyncio.Event()
    ready = [0]
    tasks = [asyncio.create_task(_client(n, cfg, go, ready)) for n in range(cfg.clients)]
    await go.wait()
    cpu0, t0 = time.process_time(), time.perf_counter()
    tallies = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    statuses: dict[str, int] = {}
    for t in tallies:
        for s, k in t.statuses.items():
            statuses[str(s)] = statuses.get(str(s), 0) + k
    return {
        "wall_s": wall,
        "client_cpu_s": cpu,
        "latencies_s": [x for t in tallies for x in t.latencies_s],
        "sent_at_s": [x - t0 for t in tallies for x in t.sent_at_s],  # from the common start
        "ids": [i for t in tallies for i in t.ids],
        "errors": sum(t.errors for t in tallies),
        "statuses": statuses,
    }


def main(argv: list[str]) -> int:
    """Entry point: a JSON config and an output path in, a JSON result file out."""
    cfg = Config(**json.loads(argv[0]))
    try:  # a cheaper event loop where installed; the measurement is the same either way
        import uvloop  # noqa: PLC0415

        result = uvloop.run(run_load(cfg))
    except ImportError:
        result = asyncio.run(run_load(cfg))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
