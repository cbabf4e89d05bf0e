#!/usr/bin/env python3
# Appends real sshd lines to log files, each at its own steady rate, from one process, for the
# measurement scripts (scripts/fleet-sim.sh, scripts/measure-daemon.sh --trickle).
#
# The lines are those of tests/fixtures/sshd/*-traditional.auth.log in turn (each file starts at its own
# place in them), each followed by ` host=NAME seq=N t=<epoch ms>`: N counts that file's lines from 0, so
# losses and duplicates can be counted exactly, and t is the time the line was written, from which the
# quota proxy measures the latency to its acceptance. Each line is one write(2) with O_APPEND, as syslog
# daemons write. The files' writes are spread evenly over each second (a phase per file), not bunched, and
# with --start-spread S the files start one after another over S seconds.
#
#   .venv/bin/python scripts/line-writer.py [--seconds S] [--start-spread S] NAME=PATH=RATE ...
#
# RATE is in lines per second (a decimal). It runs until SIGTERM (or S seconds), then prints
# `{"NAME": lines written, ...}` as JSON on stdout.
import argparse
import glob
import heapq
import json
import os
import signal
import sys
import time


def main():
    p = argparse.ArgumentParser(description="append numbered real sshd lines to files at steady rates")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--start-spread", type=float, default=0.0, help="start the files over this many seconds")
    p.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "sshd"))
    p.add_argument("targets", nargs="+", metavar="NAME=PATH=RATE")
    args = p.parse_args()

    base = []
    for path in sorted(glob.glob(os.path.join(args.fixtures, "*-traditional.auth.log"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            base += [line.rstrip("\n") for line in f if line.strip()]
    if not base:
        sys.exit("line-writer: no fixture lines found")

    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    files = []
    for i, target in enumerate(args.targets):
        name, path, rate = target.rsplit("=", 2)
        rate = float(rate)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        files.append({"name": name, "fd": fd, "rate": rate, "seq": 0, "start": (i * 7919) % len(base)})

    start = time.monotonic()
    deadline = start + args.seconds if args.seconds is not None else None
    # (due time, index): the next line of each file; a file's phase spreads the files over a second.
    heap = []
    for i, f in enumerate(files):
        if f["rate"] > 0:
            phase = ((i * 0.6180339887) % 1.0) / f["rate"]
            heap.append((start + args.start_spread * i / len(files) + phase, i))
    heapq.heapify(heap)
    while heap and not stop:
        due, i = heap[0]
        now = time.monotonic()
        if deadline is not None and min(due, now) >= deadline:
            break
        if due > now:
            time.sleep(min(due - now, 0.05))
            continue
        heapq.heappop(heap)
        f = files[i]
        text = base[(f["start"] + f["seq"]) % len(base)]
        line = f"{text} host={f['name']} seq={f['seq']} t={time.time_ns() // 1_000_000}\n"
        os.write(f["fd"], line.encode())
        f["seq"] += 1
        heapq.heappush(heap, (due + 1.0 / f["rate"], i))
    if deadline is not None and not stop:
        while not stop and time.monotonic() < deadline:
            time.sleep(0.05)
    for f in files:
        os.close(f["fd"])
    json.dump({f["name"]: f["seq"] for f in files}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
