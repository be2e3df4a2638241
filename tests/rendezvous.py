"""A tiny distributed "trainer" for the multi-node tests: the ranks of one job meet over TCP.

Run once per node by a backend under the launch contract
(:func:`aifactory.service.executors.base.rank_env`). Rank 0 listens on
``MASTER_ADDR:MASTER_PORT``; every other rank connects (retrying while rank 0 starts) and
sends what it was given: its rank, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``CUDA_VISIBLE_DEVICES``, ``AIFACTORY_PLACEMENT`` and ``AIFACTORY_JOB_ID``. Rank 0 checks the
world: ranks 0..WORLD_SIZE-1 each exactly once, one job, one placement, and each rank's GPUs
exactly its own node's entry of the placement (with ``--gpu-count-only``, only as many as
that entry: Slurm chooses the device indices itself). It then answers every rank, and every
rank prints one line ``rank R/W ok gpus=...`` (rank 0 also ``world ok ...``) and exits 0.
Any mismatch or timeout exits 1 with the reason.

Options: ``--hold S`` keeps every rank alive S seconds after the rendezvous (for cancel and
time-limit tests); ``--fail-rank R`` makes rank R exit 3 after the rendezvous; ``--timeout S``
bounds the rendezvous (default 60 s).

Stdlib only: it runs under the job user's bare interpreter, outside the project's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time


def _given() -> dict[str, object]:
    return {
        "rank": int(os.environ["NODE_RANK"]),
        "world": int(os.environ["WORLD_SIZE"]),
        "local_world": int(os.environ["LOCAL_WORLD_SIZE"]),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "placement": os.environ["AIFACTORY_PLACEMENT"],
        "job": os.environ["AIFACTORY_JOB_ID"],
        "host": socket.gethostname(),
    }


def _check(world: int, seen: list[dict[str, object]], count_only: bool) -> str | None:
    """Why the world is wrong, or None when every rank got what the placement says."""
    ranks = sorted(int(str(s["rank"])) for s in seen)
    if ranks != list(range(world)):
        return f"ranks {ranks}, expected 0..{world - 1}"
    for field in ("world", "placement", "job"):
        values = {str(s[field]) for s in seen}
        if len(values) != 1:
            return f"ranks disagree on {field}: {sorted(values)}"
    entries = str(seen[0]["placement"]).split(";")
    if len(entries) != world:
        return f"placement {seen[0]['placement']!r} has {len(entries)} nodes, world is {world}"
    for s in seen:
        want = entries[int(str(s["rank"]))].split(":", 1)[1]
        got = str(s["gpus"])
        ngot = len([g for g in got.split(",") if g])
        if ngot != int(str(s["local_world"])):
            return f"rank {s['rank']}: {ngot} GPUs visible, LOCAL_WORLD_SIZE {s['local_world']}"
        if count_only:
            if ngot != len(want.split(",")):
                return f"rank {s['rank']}: {ngot} GPUs visible, its node holds {want}"
        elif got != want:
            return f"rank {s['rank']}: CUDA_VISIBLE_DEVICES={got!r}, its node holds {want!r}"
    return None


def _send(sock: socket.socket, obj: object) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def _recv(sock: socket.socket) -> object:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return json.loads(buf)


def _rank0(me: dict[str, object], port: int, timeout: float, count_only: bool) -> str:
    world = int(str(me["world"]))
    server = socket.create_server(("", port), reuse_port=False)
    server.settimeout(timeout)
    peers: list[socket.socket] = []
    seen = [me]
    while len(seen) < world:
        conn, _addr = server.accept()
        conn.settimeout(timeout)
        msg = _recv(conn)
        assert isinstance(msg, dict)
        seen.append(msg)
        peers.append(conn)
    problem = _check(world, seen, count_only)
    for conn in peers:
        _send(conn, {"ok": problem is None, "why": problem})
        conn.close()
    server.close()
    if problem is not None:
        raise SystemExit(f"rendezvous failed: {problem}")
    hosts = sorted({str(s["host"]) for s in seen})
    return f"world ok size={world} placement={me['placement']} hosts={','.join(hosts)}"


def _rank_n(me: dict[str, object], addr: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((addr, port), timeout=timeout)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                why = f"rank {me['rank']}: rank 0 at {addr}:{port} never answered"
                raise SystemExit(why) from exc
            time.sleep(0.2)
    _send(sock, me)
    answer = _recv(sock)
    sock.close()
    assert isinstance(answer, dict)
    if not answer["ok"]:
        raise SystemExit(f"rendezvous failed (rank 0 says): {answer['why']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--fail-rank", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--gpu-count-only", action="store_true")
    args = parser.parse_args()
    me = _given()
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if me["rank"] == 0:
        print(_rank0(me, port, args.timeout, args.gpu_count_only), flush=True)
    else:
        _rank_n(me, addr, port, args.timeout)
    print(f"rank {me['rank']}/{me['world']} ok gpus={me['gpus']} host={me['host']}", flush=True)
    if args.hold:
        time.sleep(args.hold)
    if args.fail_rank == me["rank"]:
        print(f"rank {me['rank']} fails on purpose", flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
