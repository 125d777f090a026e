#!/usr/bin/env python3
"""Work on what the local Heartbeat node owns, only while its leases hold.

A non-Go application beside a Heartbeat sidecar, standard library only. It
follows docs/leases-http.md, strict recipe: it asks GET /v1/lease every 50 ms
and starts its own monotonic timer when it SENT each request, for the time
the answer says is left, less a margin. Whatever the delays between it and
the sidecar (a paused sidecar, a slow network), that timer never outlives the
sidecar's lease, so its work stops before any other node's can start.

  - one worker thread per owned resource (id, epoch), stopped when the
    resource leaves the owned set or changes epoch, or when the ownership
    lease runs out without a renewal;
  - with --leader, a leader job while the node leads, stopped the same way
    on the leader lease.

Stopping is cooperative: a thread finishes its current unit of work, and
nobody can stop a paused application. Pass the epoch (or the fencing token)
to whatever the work writes to, and have that store refuse a smaller one.

    python3 examples/lease_follow.py --sidecar 127.0.0.1:7412 [--leader] [--duration 10]
"""

import argparse
import http.client
import json
import queue
import sys
import threading
import time

POLL = 0.050    # between two GET /v1/lease (the sidecar renews every 50 ms)
MARGIN = 0.020  # taken off every lease: clock rates, the time to notice a stop
WORK = 0.5      # between two units of work


def log(msg):
    now = time.time()
    print(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d} {msg}", flush=True)


class Job(threading.Thread):
    """Runs unit(stop) every WORK seconds until stop is set; tag is the
    epoch (or fencing token) it works under."""

    def __init__(self, name, unit, tag):
        super().__init__(name=name, daemon=True)
        self.stop = threading.Event()
        self.unit = unit
        self.tag = tag

    def run(self):
        log(f"start {self.name}")
        while not self.stop.is_set():
            self.unit(self.stop)
            self.stop.wait(WORK)
        log(f"stop {self.name}")

    def cancel(self):
        self.stop.set()
        self.join()


def work_on(resource, epoch):
    def unit(stop):
        # A real worker writes here, passing `epoch` as its fencing token:
        # the store refuses an epoch below the highest it has seen.
        log(f"  working on {resource} (epoch {epoch})")
    return unit


def lead(token):
    def unit(stop):
        log(f"  leader job (fencing token {token})")
    return unit


def seconds(duration):
    """A protojson Duration ("0.172s"; null when unset) in seconds."""
    return float(duration[:-1]) if duration else 0.0


def poller(addr, answers, done):
    """Asks GET /v1/lease every POLL seconds; puts (sent_at, answer or None)."""
    host, port = addr.rsplit(":", 1)
    conn = None
    while not done.is_set():
        sent = time.monotonic()  # taken BEFORE the request goes out
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=1)
            conn.request("GET", "/v1/lease")
            resp = conn.getresponse()
            body = resp.read()
            answer = json.loads(body) if resp.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            if conn is not None:
                conn.close()
            conn, answer = None, None
        answers.put((sent, answer))
        done.wait(max(0.0, POLL - (time.monotonic() - sent)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sidecar", default="127.0.0.1:7402", help="HTTP address of the local sidecar")
    ap.add_argument("--leader", action="store_true", help="also run a leader job while the node leads")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: never)")
    args = ap.parse_args()

    answers, done = queue.Queue(), threading.Event()
    threading.Thread(target=poller, args=(args.sidecar, answers, done), daemon=True).start()
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")

    owned_until = 0.0   # monotonic deadline of the ownership lease
    leader_until = 0.0  # of the leader lease
    owned = {}          # resource -> epoch, from the last answer
    token = 0
    jobs = {}           # resource -> Job
    leader_job = None

    def stop_all(why):
        if jobs:
            log(f"stopping all work: {why}")
        for j in jobs.values():
            j.cancel()
        jobs.clear()

    def stop_leader(why):
        nonlocal leader_job
        if leader_job is not None:
            log(f"stopping the leader job: {why}")
            leader_job.cancel()
            leader_job = None

    while time.monotonic() < end:
        # Wait for an answer, but never past a deadline.
        now = time.monotonic()
        wake = min(end, now + 1,
                   owned_until if jobs else end,
                   leader_until if leader_job else end)
        try:
            sent, ans = answers.get(timeout=max(0.0, wake - now))
        except queue.Empty:
            sent, ans = None, None
        if ans is not None:
            lease = ans["lease"]  # a GetLeaseResponse: protojson, durations as "0.172s"
            left = seconds(lease["ownership_lease_remaining"])
            if left <= 0:
                owned_until = 0.0  # the sidecar holds no ownership lease: stop now
            else:
                owned_until = max(owned_until, sent + left - MARGIN)
            owned = {o["id"]: int(o["epoch"]) for o in lease["owned"]}
            left = seconds(lease["leader_lease_remaining"]) if lease["is_leader"] else 0
            fencing = int(lease["fencing_token"])  # 64-bit integers come as strings
            if left <= 0 or fencing != token:
                leader_until = 0.0
            token = fencing
            if left > 0:
                leader_until = max(leader_until, sent + left - MARGIN)

        now = time.monotonic()
        for rid in [r for r, j in jobs.items() if owned.get(r) != j.tag]:
            log(f"{rid} epoch {jobs[rid].tag}: no longer owned")
            jobs.pop(rid).cancel()
        if now >= owned_until:
            stop_all("ownership lease ran out or was revoked")
        else:
            for rid, epoch in owned.items():
                if rid not in jobs:
                    j = Job(f"{rid}@{epoch}", work_on(rid, epoch), epoch)
                    jobs[rid] = j
                    j.start()
        if leader_job is not None and (now >= leader_until or leader_job.tag != token):
            stop_leader("leader lease ran out, revoked, or a new token")
        if args.leader and leader_job is None and now < leader_until:
            leader_job = Job(f"leader token {token}", lead(token), token)
            leader_job.start()

    done.set()
    stop_all("done")
    stop_leader("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
