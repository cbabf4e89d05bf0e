#!/usr/bin/env python3
"""What arrived at the local CloudWatch endpoint, compared with what should have: the assertions of
scripts/host-test.sh. Runs with the repo's .venv (boto3 comes with moto).

    cw.py reset ENDPOINT
        clears moto's state (POST /moto-api/reset)

    cw.py lines ENDPOINT GROUP EVENTS_OUT TIMEOUT [extra-ok] -- EXPECT_CMD...
        waits until the log group holds exactly the lines EXPECT_CMD prints (one stream, every line once,
        besides the embedded-metric-format events of the minutes that ride in it,
        in order; an empty line is shipped as one space), then waits 2 s more and checks again, so that a
        late duplicate is seen too. Prints what differs and exits 1 when it still differs at TIMEOUT.
        The events (timestamp, message) are written to EVENTS_OUT, one JSON array per line.
        With extra-ok, lines that EXPECT_CMD does not print may arrive too, once each, between the
        expected ones (copytruncate: what was written between the copy and the truncate is in neither
        file, and the daemon may have read it before the truncate).

    cw.py metrics ENDPOINT GROUP NAMESPACE HEARTBEAT EVENTS TIMEOUT -- CLASSIFY_CMD...
        groups the events of EVENTS by the minute of their timestamp (the daemon counts a line into the
        minute it read it, which is the timestamp it ships) and runs CLASSIFY_CMD (`sshwatch classify`,
        lines on stdin) on each group; then waits until every metric's per-minute Sum equals the counts
        (the Sum of what PutMetricData stored plus that of the embedded-metric-format events in GROUP,
        which CloudWatch turns into metrics and moto does not),
        HEARTBEAT equals the group's size, and every other minute published holds only zeros. Prints the
        table and exits 1 when it still differs at TIMEOUT.

    cw.py render-journal
        journalctl -o json on stdin, each entry rendered as the daemon renders it (`Mmm dd HH:MM:SS host
        ident[pid]: MESSAGE`, local time, day space-padded), written independently of the daemon's code
        from the journal's documented fields, so the two can be compared.
"""

import collections
import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request

import boto3


def is_emf(message):
    """Whether a log event is one of the daemon's embedded-metric-format events (they ride in the lines'
    stream): a JSON object with an `_aws` member. No log line starts with `{`."""
    return message.startswith("{") and '"_aws"' in message


CREDS = dict(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, **CREDS)


def reset(endpoint):
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30)


def fetch_events(logs, group):
    """{stream: [(timestamp, message), ...]} in the order GetLogEvents returns them."""
    out = {}
    try:
        streams = [s["logStreamName"] for page in logs.get_paginator("describe_log_streams").paginate(
            logGroupName=group) for s in page["logStreams"]]
    except logs.exceptions.ResourceNotFoundException:
        return out
    for stream in streams:
        events, token = [], None
        while True:
            kw = dict(logGroupName=group, logStreamName=stream, startFromHead=True)
            if token:
                kw["nextToken"] = token
            page = logs.get_log_events(**kw)
            events += [(e["timestamp"], e["message"]) for e in page["events"]]
            if not page["events"] or page.get("nextForwardToken") in (None, token):
                break
            token = page["nextForwardToken"]
        out[stream] = events
    return out


def expected_lines(cmd):
    raw = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout
    lines = raw.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        lines = lines[:-1]  # a last line without its newline is still being written
    return [(line.removesuffix("\r") or " ") for line in lines]


def describe(want, got):
    """What differs between the expected and the arrived messages, in a few lines."""
    w, g = collections.Counter(want), collections.Counter(got)
    missing = w - g
    extra = g - w
    dup = sum(n - 1 for m, n in g.items() if n > 1 and w[m] < n and m in w)
    out = [f"expected {len(want)} lines, arrived {len(got)}: {sum(missing.values())} missing, "
           f"{sum(extra.values())} not expected (of which {dup} duplicates)"]
    if not missing and not extra and want != got:
        first = next(i for i, (a, b) in enumerate(zip(want, got)) if a != b)
        out.append(f"same lines, different order from line {first + 1}: expected {want[first]!r}, got {got[first]!r}")
    for m in list(missing)[:5]:
        out.append(f"missing: {m!r}")
    for m in list(extra)[:5]:
        out.append(f"not expected: {m!r} x{extra[m]}")
    return out


def is_subsequence(want, got):
    it = iter(got)
    return all(any(w == g for g in it) for w in want)


def matches(want, got, extra_ok):
    if got == want:
        return True
    if not extra_ok:
        return False
    extra = collections.Counter(got) - collections.Counter(want)
    return (is_subsequence(want, got) and all(n == 1 for n in extra.values())
            and not any(m in want for m in extra))


def lines(endpoint, group, events_out, timeout, cmd, extra_ok=False):
    logs = client("logs", endpoint)
    deadline = time.time() + timeout
    confirmed = False
    while True:
        want = expected_lines(cmd)
        streams = {k: [e for e in v if not is_emf(e[1])] for k, v in fetch_events(logs, group).items()}
        events = [e for evs in streams.values() for e in evs]
        got = [m for _, m in events]
        ok = len(streams) == 1 and matches(want, got, extra_ok)
        if ok and confirmed:
            break
        if ok:
            confirmed = True  # look once more after the daemon had time to send a duplicate
            time.sleep(2)
            continue
        confirmed = False
        if time.time() > deadline:
            break
        time.sleep(1)
    with open(events_out, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    if ok:
        extra = len(got) - len(want)
        print(f"{len(want)} lines arrived, each once, in order, in stream {next(iter(streams))}"
              + (f"; and {extra} line(s) in neither file, once each" if extra else ""))
        for m in (collections.Counter(got) - collections.Counter(want)):
            print(f"in neither file: {m!r}")
        return 0
    if len(streams) != 1:
        print(f"expected one log stream, found {len(streams)}: {sorted(streams)}")
    for line in describe(want, got):
        print(line)
    return 1


def minute_of(ts_ms):
    return ts_ms // 60000 * 60


def emf_sums(logs, group, namespace):
    """{minute: {metric: Sum}} of the embedded-metric-format events in GROUP."""
    out = collections.defaultdict(lambda: collections.defaultdict(float))
    for stream, events in fetch_events(logs, group).items():
        for _, message in events:
            if not is_emf(message):
                continue
            doc = json.loads(message)
            minute = minute_of(doc["_aws"]["Timestamp"])
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                if directive["Namespace"] != namespace:
                    continue
                for m in directive["Metrics"]:
                    out[minute][m["Name"]] += float(doc[m["Name"]])
    return out


def metrics(endpoint, group, namespace, heartbeat, events_file, timeout, cmd):
    events = [json.loads(l) for l in open(events_file) if l.strip()]
    groups = collections.defaultdict(list)
    for ts, msg in events:
        groups[minute_of(ts)].append(msg)
    want = {}
    names = set()
    for minute, msgs in sorted(groups.items()):
        out = subprocess.run(cmd, input=("\n".join(msgs) + "\n").encode(), stdout=subprocess.PIPE, check=True).stdout
        c = json.loads(out)
        if c["lines"] != len(msgs):
            print(f"classify counted {c['lines']} lines of {len(msgs)} in minute {minute}")
            return 1
        want[minute] = dict(c["metrics"])
        names |= set(c["metrics"])
        if heartbeat:
            want[minute][heartbeat] = len(msgs)
    if heartbeat:
        names.add(heartbeat)
    if not want:
        print("no events to compare")
        return 1
    cw = client("cloudwatch", endpoint)
    logs = client("logs", endpoint)
    lo = dt.datetime.fromtimestamp(min(want) - 3600, dt.timezone.utc)
    hi = dt.datetime.fromtimestamp(max(want) + 3600, dt.timezone.utc)
    deadline = time.time() + timeout
    while True:
        got = collections.defaultdict(dict)
        for minute, sums in emf_sums(logs, group, namespace).items():
            for name, value in sums.items():
                if name in names:
                    got[minute][name] = value
        listed = {m["MetricName"]: m.get("Dimensions", []) for m in
                  cw.get_paginator("list_metrics").paginate(Namespace=namespace).build_full_result()["Metrics"]}
        for name in sorted(names):
            points = cw.get_metric_statistics(Namespace=namespace, MetricName=name, Period=60, Statistics=["Sum"],
                                              StartTime=lo, EndTime=hi,
                                              Dimensions=listed.get(name, []))["Datapoints"]
            for p in points:
                minute = int(p["Timestamp"].timestamp())
                got[minute][name] = got[minute].get(name, 0) + p["Sum"]
        bad = []
        for minute in sorted(set(want) | set(got)):
            w = want.get(minute, {})
            for name in sorted(names):
                if float(w.get(name, 0)) != float(got.get(minute, {}).get(name, 0)):
                    bad.append((minute, name, w.get(name, 0), got.get(minute, {}).get(name)))
        if not bad or time.time() > deadline:
            break
        time.sleep(2)
    print(f"{len(events)} events in {len(want)} minute(s); per minute (UTC), classify of the events / Sum published:")
    for minute in sorted(set(want) | set(got)):
        t = dt.datetime.fromtimestamp(minute, dt.timezone.utc).strftime("%H:%M")
        cells = []
        for n in sorted(names):
            g = got.get(minute, {}).get(n)
            cells.append(f"{n} {want.get(minute, {}).get(n, 0)}/{'-' if g is None else f'{g:g}'}")
        print(f"  {t}  " + ", ".join(cells))
    for minute, name, w, g in bad[:10]:
        print(f"differs: minute {minute} {name}: classify {w}, published {g}")
    return 1 if bad else 0


def field(entry, name):
    """A journal field as bytes: text is a string, binary an array of byte values, a repeated field an
    array of those (journalctl(1), --output=json)."""
    v = entry.get(name)
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, list) and v and all(isinstance(b, int) for b in v):
        return bytes(v)
    if isinstance(v, list) and v:
        return field({name: v[0]}, name)
    return None


def token(b):
    s = b.decode("utf-8", errors="replace")
    t = "".join("_" if (c.isspace() or ord(c) < 0x20 or ord(c) == 0x7f) else c for c in s)
    return t or "-"


def render_journal():
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        e = json.loads(raw)
        msg = field(e, "MESSAGE")
        if msg is None or "__CURSOR" not in e:
            continue
        us = int((field(e, "_SOURCE_REALTIME_TIMESTAMP") or field(e, "__REALTIME_TIMESTAMP")).decode())
        t = dt.datetime.fromtimestamp(us / 1e6).astimezone()
        stamp = f"{t.strftime('%b')} {t.day:>2} {t.strftime('%H:%M:%S')}"
        host = token(field(e, "_HOSTNAME") or b"localhost")
        ident = token(field(e, "SYSLOG_IDENTIFIER") or field(e, "_COMM") or b"sshd")
        pid = field(e, "SYSLOG_PID") or field(e, "_PID")
        head = f"{stamp} {host} {ident}" + (f"[{token(pid)}]" if pid is not None else "") + ": "
        if msg.endswith(b"\n"):
            msg = msg[:-1]
        body = b"".join(f"#{b:03o}".encode() if (b < 0x20 or b == 0x7f) else bytes([b]) for b in msg)
        out.write(head.encode() + body + b"\n")
    return 0


def main(argv):
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    args = argv[:argv.index("--")] if "--" in argv else argv
    if args[0] == "reset":
        reset(args[1])
        return 0
    if args[0] == "lines":
        return lines(args[1], args[2], args[3], float(args[4]), cmd, extra_ok=args[5:] == ["extra-ok"])
    if args[0] == "metrics":
        return metrics(args[1], args[2], args[3], args[4], args[5], float(args[6]), cmd)
    if args[0] == "render-journal":
        return render_journal()
    print(f"unknown command {args[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
