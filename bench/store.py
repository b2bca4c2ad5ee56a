"""The store's CPU per mail under the relay's write pattern, measured alone.

Starts each given FerretDB binary on its own port with an empty data folder and replays,
with ``--writers`` concurrent writers, what Hato's services ask of the store for a batch
of mails: ingest's suppression look-up, hourly count, and inserts of messages, recipients
and events; the signer's events and message update; the dispatcher's look-up of pending
recipients, its events and the recipients' update. Prints the server's CPU (user + system,
from /proc) per mail. Binaries are run in turns, ``--rounds`` times, so that a change of
the machine's speed during the run hits them alike.

    python -m bench.store var/bin/ferretdb /tmp/other/ferretdb --mails 3000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pymongo import AsyncMongoClient, ReturnDocument

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def batch(db, n: int, serial: list[int]) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    base = serial[0]
    serial[0] += n
    ids = [f"m{base + i:09d}" for i in range(n)]
    rids = [f"r{base + i:09d}" for i in range(n)]
    await db.suppressions.find(
        {"tenant": "bench", "address": {"$in": [f"{r}@example.com" for r in rids]}}
    ).to_list()
    await db.rates.find_one_and_update(
        {"_id": "bench:hour"},
        {"$inc": {"count": n}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    await db.messages.insert_many(
        [
            {"_id": i, "tenant": "bench", "status": "accepted", "size": 1024, "created_at": now}
            for i in ids
        ]
    )
    await db.recipients.insert_many(
        [
            {
                "_id": r,
                "message_id": i,
                "tenant": "bench",
                "address": f"{r}@example.com",
                "status": "queued",
                "attempts": 0,
                "created_at": now,
            }
            for i, r in zip(ids, rids, strict=True)
        ]
    )
    await db.events.insert_many(
        [
            {
                "_id": f"a{r}",
                "type": "accepted",
                "message_id": i,
                "tenant": "bench",
                "recipient_id": r,
                "at": now,
            }
            for i, r in zip(ids, rids, strict=True)
        ]
    )
    await db.events.insert_many(
        [
            {"_id": f"s{i}", "type": "signed", "message_id": i, "tenant": "bench", "at": now}
            for i in ids
        ]
    )
    await db.messages.update_many({"_id": {"$in": ids}}, {"$set": {"status": "signed"}})
    await db.recipients.find({"_id": {"$in": rids}}, {"status": 1}).to_list()
    await db.events.insert_many(
        [
            {
                "_id": f"d{r}",
                "type": "delivered",
                "message_id": i,
                "tenant": "bench",
                "recipient_id": r,
                "at": now,
            }
            for i, r in zip(ids, rids, strict=True)
        ]
    )
    await db.recipients.update_many(
        {"_id": {"$in": rids}}, {"$set": {"status": "delivered"}, "$inc": {"attempts": 1}}
    )


async def workload(url: str, mails: int, writers: int, per_batch: int) -> float:
    client: AsyncMongoClient = AsyncMongoClient(url)
    db = client["bench_store"]
    await db.recipients.create_index("message_id")
    await db.recipients.create_index([("tenant", 1), ("address", 1)])
    await db.events.create_index([("message_id", 1), ("at", 1)])
    await db.events.create_index([("tenant", 1), ("at", 1)])
    await db.events.create_index("at")
    await db.suppressions.create_index([("tenant", 1), ("address", 1)])
    await db.rates.insert_one({"_id": "bench:hour", "count": 0})
    serial = [0]
    left = [mails // per_batch]

    async def writer() -> None:
        while left[0] > 0:
            left[0] -= 1
            await batch(db, per_batch, serial)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    wall = time.perf_counter() - started
    await client.close()
    return wall


def run_one(binary: str, mails: int, writers: int, per_batch: int) -> tuple[float, float]:
    data = tempfile.mkdtemp(prefix="bench-store-")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--sqlite-url",
            f"file:{data}/",
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        before = cpu_seconds(proc.pid)
        wall = asyncio.run(workload(f"mongodb://127.0.0.1:{port}", mails, writers, per_batch))
        return (cpu_seconds(proc.pid) - before) * 1000 / mails, mails / wall
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--mails", type=int, default=3000)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5, help="mails per batch of writes")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {b: [] for b in args.binaries}
    for _ in range(args.rounds):
        for binary in args.binaries:
            results[binary].append(run_one(binary, args.mails, args.writers, args.batch))
    print(f"{args.mails} mails, {args.writers} writers, {args.batch} mails per batch")
    print(f"{'server':50} {'CPU ms/mail':>12} {'mails/s':>9}")
    for binary, rows in results.items():
        cpu = sorted(r[0] for r in rows)[len(rows) // 2]
        rate = sorted(r[1] for r in rows)[len(rows) // 2]
        print(
            f"{binary:50} {cpu:12.2f} {rate:9.0f}   (rounds: "
            + ", ".join(f"{c:.2f}" for c, _ in rows)
            + ")"
        )


if __name__ == "__main__":
    main()
