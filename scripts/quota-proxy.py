#!/usr/bin/env python3
# A counting, quota-enforcing HTTP/1.1 proxy between sshwatch daemons and a local CloudWatch-compatible
# endpoint (moto), for the measurement scripts (scripts/fleet-sim.sh, scripts/measure-daemon.sh --trickle).
#
# Every request is told apart by operation (`X-Amz-Target` for CloudWatch Logs' awsJson 1.1, the path
# `/service/.../operation/OP` for CloudWatch's Smithy RPC v2 CBOR, `Action=` for the query protocol).
# An operation given a quota gets a token bucket (RATE requests per second, holding BURST seconds of
# them); a request beyond it is answered with the service's own throttling error, as CloudWatch answers it:
#   CloudWatch Logs: HTTP 400, application/x-amz-json-1.1, {"__type":"ThrottlingException",...}
#   CloudWatch (RPC v2 CBOR): HTTP 400, smithy-protocol: rpc-v2-cbor,
#       x-amzn-query-error: Throttling;Sender, a CBOR map {"__type": "Throttling", "message": ...}
# Everything else is forwarded to the upstream endpoint, one request per upstream connection
# (`Connection: close`), while the clients keep their connections alive.
#
# It records, per operation, the calls and the throttled ones (in all and per second); for accepted
# PutLogEvents, the events per stream and, for every event whose message ends with ` t=<epoch ms>`, the
# latency from that write time to the acceptance; and for each minute published (an embedded metric format
# event in a PutLogEvents call, or a PutMetricData datum), when it was accepted relative to the minute's
# end. SIGUSR1 writes the counters as JSON to the --stats file (atomically), SIGUSR2 sets them to zero
# (the start of a measured window), SIGTERM writes them and ends.
#
#   .venv/bin/python scripts/quota-proxy.py --port PORT --upstream UPSTREAM_PORT --stats FILE \
#       [--quota PutLogEvents=100] [--quota PutMetricData=10] [--burst-seconds 1]
#
# Without --quota it only counts.
import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict

HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"upgrade"}
WRITE_TIME = re.compile(r" t=(\d{13})$")


def is_emf(message):
    """Whether a log event is one of the daemon's embedded-metric-format events (they ride in the lines'
    stream, at the head of a batch): a JSON object with an `_aws` member. No log line starts with `{`."""
    return message.startswith("{") and '"_aws"' in message


MAX_BODY = 16 << 20


class Bucket:
    """A token bucket: `rate` tokens a second, holding at most `rate * burst` (and at least one)."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.capacity = max(1.0, rate * burst)
        self.tokens = self.capacity
        self.last = time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.since = time.time()
        self.calls = Counter()
        self.throttled = Counter()
        self.ok = Counter()
        self.failed = Counter()
        self.calls_per_second = defaultdict(Counter)
        self.throttled_per_second = defaultdict(Counter)
        # PutLogEvents split by content: calls with lines (a minute's EMF event may ride at their head), and
        # calls holding EMF events alone.
        self.ple_calls = Counter()
        self.ple_throttled = Counter()
        self.ple_ok = Counter()
        self.events_by_stream = Counter()
        self.latency_ms = Counter()
        self.minutes = []
        self.emf_bytes = 0
        self.upstream_errors = 0

    def to_json(self, quotas, burst):
        ops = {}
        for op in sorted(set(self.calls) | set(self.throttled)):
            ops[op] = {
                "calls": self.calls[op],
                "throttled": self.throttled[op],
                "ok": self.ok[op],
                "failed": self.failed[op],
                "per_second": {str(s): n for s, n in sorted(self.calls_per_second[op].items())},
                "throttled_per_second": {str(s): n for s, n in sorted(self.throttled_per_second[op].items())},
            }
        return {
            "since": self.since,
            "until": time.time(),
            "quotas": quotas,
            "burst_seconds": burst,
            "operations": ops,
            "put_log_events": {
                kind: {"calls": self.ple_calls[kind], "throttled": self.ple_throttled[kind], "ok": self.ple_ok[kind]}
                for kind in ("lines", "emf")
            },
            "events_by_stream": dict(self.events_by_stream),
            "latency_ms": {str(ms): n for ms, n in sorted(self.latency_ms.items())},
            "minutes": self.minutes,
            "emf_event_bytes": self.emf_bytes,
            "upstream_errors": self.upstream_errors,
        }


class Request:
    def __init__(self, line, headers, body):
        self.line = line
        self.headers = headers
        self.body = body

    def header(self, name):
        name = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1").strip()
        return None

    def operation(self):
        target = self.header("x-amz-target")
        if target:
            return target.rsplit(".", 1)[-1]
        parts = self.line.split(b" ")
        path = parts[1].decode("latin-1") if len(parts) > 1 else ""
        if "/operation/" in path:
            return re.split(r"[?/]", path.split("/operation/", 1)[1])[0]
        m = re.search(rb"(?:^|&)Action=([A-Za-z]+)", self.body)
        return m.group(1).decode() if m else "unknown"

    def wants_close(self):
        c = (self.header("connection") or "").lower()
        return "close" in c or self.line.endswith(b"HTTP/1.0")


async def read_request(reader):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head[:-4].split(b"\r\n")
    headers = []
    for raw in lines[1:]:
        k, _, v = raw.partition(b":")
        headers.append((k.strip(), v.strip()))
    req = Request(lines[0], headers, b"")
    try:
        if (req.header("transfer-encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
                if len(body) > MAX_BODY:
                    return None
            req.body = bytes(body)
            req.headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
            req.headers.append((b"Content-Length", str(len(req.body)).encode()))
        else:
            n = int(req.header("content-length") or 0)
            if n > MAX_BODY:
                return None
            req.body = await reader.readexactly(n) if n else b""
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        return None
    return req


def response(status, reason, headers, body, close):
    out = [f"HTTP/1.1 {status} {reason}".encode()]
    for k, v in headers:
        if k.lower() in HOP_BY_HOP or k.lower() == b"content-length":
            continue
        out.append(k + b": " + v)
    out.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        out.append(b"Connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def cbor_text_map(pairs):
    """A CBOR map of short text keys and values (RFC 8949: major type 5, then 3 for each text)."""

    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        if n < 256:
            return bytes([major << 5 | 24, n])
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")

    out = head(5, len(pairs))
    for k, v in pairs:
        for text in (k, v):
            b = text.encode()
            out += head(3, len(b)) + b
    return out


def throttling_answer(req, close):
    """CloudWatch's or CloudWatch Logs' own throttling error for `req`."""
    if req.header("smithy-protocol") == "rpc-v2-cbor":
        headers = [
            (b"Content-Type", b"application/cbor"),
            (b"smithy-protocol", b"rpc-v2-cbor"),
            (b"x-amzn-query-error", b"Throttling;Sender"),
            (b"x-amzn-RequestId", b"quota-proxy"),
        ]
        body = cbor_text_map([("__type", "Throttling"), ("message", "Rate exceeded")])
    elif req.header("x-amz-target"):
        headers = [(b"Content-Type", b"application/x-amz-json-1.1"), (b"x-amzn-RequestId", b"quota-proxy")]
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
    else:
        headers = [(b"Content-Type", b"text/xml"), (b"x-amzn-RequestId", b"quota-proxy")]
        body = (
            b'<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>Sender</Type>'
            b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>quota-proxy</RequestId>"
            b"</ErrorResponse>"
        )
    return response(400, "Bad Request", headers, body, close)


class Proxy:
    def __init__(self, args):
        self.upstream = ("127.0.0.1", args.upstream)
        self.stats_path = args.stats
        self.burst = args.burst_seconds
        self.quotas = {}
        for q in args.quota:
            op, _, rate = q.partition("=")
            self.quotas[op] = float(rate)
        self.buckets = {op: Bucket(rate, self.burst) for op, rate in self.quotas.items()}
        self.stats = Stats()
        self.upstream_slots = asyncio.Semaphore(args.upstream_connections)

    async def forward(self, req):
        """Sends `req` upstream on a new connection; returns (status, reason, headers, body) or None."""
        head = [req.line]
        for k, v in req.headers:
            if k.lower() not in HOP_BY_HOP:
                head.append(k + b": " + v)
        head.append(b"Connection: close")
        data = b"\r\n".join(head) + b"\r\n\r\n" + req.body
        async with self.upstream_slots:
            try:
                r, w = await asyncio.open_connection(*self.upstream)
                w.write(data)
                await w.drain()
                raw = await r.read()
                w.close()
            except (ConnectionError, OSError):
                return None
        split = raw.find(b"\r\n\r\n")
        if split < 0:
            return None
        lines = raw[:split].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        headers = []
        chunked = False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
            headers.append((k.strip(), v.strip()))
        body = raw[split + 4 :]
        if chunked:
            out, i = bytearray(), 0
            while True:
                j = body.index(b"\r\n", i)
                size = int(body[i:j].split(b";")[0], 16)
                if size == 0:
                    break
                out += body[j + 2 : j + 2 + size]
                i = j + 2 + size + 2
            body = bytes(out)
        return status, reason, headers, body

    def record_accepted_logs(self, payload, stream, kind, now_ms):
        st = self.stats
        events = payload.get("logEvents") or []
        st.events_by_stream[stream] += len(events)
        for e in events:
            msg = e.get("message", "")
            if is_emf(msg):
                st.emf_bytes += len(msg.encode())
                try:
                    doc = json.loads(msg)
                    minute_ms = int(doc["_aws"]["Timestamp"])
                except (ValueError, KeyError, TypeError):
                    continue
                st.minutes.append({"stream": stream, "minute": minute_ms // 1000,
                                   "accepted_ms": now_ms, "via": "emf"})
            else:
                m = WRITE_TIME.search(msg)
                if m:
                    st.latency_ms[max(0, now_ms - int(m.group(1)))] += 1

    def record_accepted_metrics(self, req, now_ms):
        minute = None
        try:
            if req.header("smithy-protocol") == "rpc-v2-cbor":
                from moto.core import cbor  # the upstream's own decoder, from the same venv

                doc = cbor.loads(req.body)
                stamps = [d.get("Timestamp") for d in doc.get("MetricData", [])]
                stamps = [s.timestamp() if hasattr(s, "timestamp") else float(s) for s in stamps if s is not None]
                if stamps:
                    minute = int(min(stamps)) // 60 * 60
        except Exception:  # noqa: BLE001 - the minute is then taken from the arrival time
            minute = None
        if minute is None:
            minute = (now_ms // 1000 - 60) // 60 * 60
        self.stats.minutes.append({"stream": "", "minute": minute, "accepted_ms": now_ms, "via": "put_metric_data"})

    async def handle(self, reader, writer):
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                close = req.wants_close()
                answer = await self.answer(req, close)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except (ConnectionError, OSError):
                pass

    async def answer(self, req, close):
        st = self.stats
        op = req.operation()
        second = int(time.time())
        st.calls[op] += 1
        st.calls_per_second[op][second] += 1
        payload, stream, kind = None, None, None
        if op == "PutLogEvents":
            try:
                payload = json.loads(req.body)
                stream = payload.get("logStreamName", "")
            except ValueError:
                payload, stream = {}, ""
            events = payload.get("logEvents") or []
            alone = events and all(is_emf(e.get("message", "")) for e in events)
            kind = "emf" if alone else "lines"
            st.ple_calls[kind] += 1
        bucket = self.buckets.get(op)
        if bucket is not None and not bucket.take():
            st.throttled[op] += 1
            st.throttled_per_second[op][second] += 1
            if kind:
                st.ple_throttled[kind] += 1
            return throttling_answer(req, close)
        got = await self.forward(req)
        if got is None:
            st.upstream_errors += 1
            st.failed[op] += 1
            body = b'{"__type":"ServiceUnavailableException","message":"the upstream endpoint did not answer"}'
            return response(503, "Service Unavailable", [(b"Content-Type", b"application/x-amz-json-1.1")], body, close)
        status, reason, headers, body = got
        # The upstream's answer may belong to a window that was reset meanwhile: count it in the current one.
        st = self.stats
        now_ms = int(time.time() * 1000)
        if 200 <= status < 300:
            st.ok[op] += 1
            if kind:
                st.ple_ok[kind] += 1
                self.record_accepted_logs(payload, stream, kind, now_ms)
            elif op == "PutMetricData":
                self.record_accepted_metrics(req, now_ms)
        else:
            st.failed[op] += 1
        return response(status, reason, headers, body, close)

    def dump(self):
        if not self.stats_path:
            return
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.stats.to_json(self.quotas, self.burst), f)
        os.replace(tmp, self.stats_path)


async def main():
    p = argparse.ArgumentParser(description="counting, quota-enforcing proxy in front of moto")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", type=int, required=True, help="the upstream endpoint's port on 127.0.0.1")
    p.add_argument("--stats", help="where SIGUSR1 and SIGTERM write the counters (JSON)")
    p.add_argument("--quota", action="append", default=[], metavar="OPERATION=RATE",
                   help="requests per second allowed for OPERATION (repeatable)")
    p.add_argument("--burst-seconds", type=float, default=1.0, help="seconds of quota a bucket holds")
    p.add_argument("--upstream-connections", type=int, default=16, help="most requests upstream at once")
    args = p.parse_args()
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, backlog=1024, limit=1 << 20)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, proxy.dump)
    loop.add_signal_handler(signal.SIGUSR2, proxy.stats.reset)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"quota-proxy: 127.0.0.1:{args.port} -> 127.0.0.1:{args.upstream}, quotas {proxy.quotas or 'none'}",
          file=sys.stderr)
    await stop.wait()
    server.close()
    proxy.dump()


if __name__ == "__main__":
    asyncio.run(main())
