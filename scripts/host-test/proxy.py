#!/usr/bin/env python3
"""A switchable TCP proxy in front of the local CloudWatch endpoint, for the outage scenarios of
scripts/host-test.sh: the daemon is pointed at the proxy, the proxy forwards to moto, and the test takes
the endpoint down and brings it back without losing what moto holds (its state is in memory).

    proxy.py UPSTREAM_PORT

Listens on a free loopback port and prints one line, `PORT CONTROL_PORT`, once both accept.
Control, over HTTP on CONTROL_PORT:

    GET /down   the endpoint is down: the listening socket is closed (new connections are refused,
                ECONNREFUSED, as from a host whose service is not running) and every open connection
                is cut
    GET /up     listen again on the same port and forward
    GET /state  `up` or `down`, and the number of connections forwarded so far

Bytes are relayed as they are (no HTTP parsing): whatever the SDK sends reaches moto unchanged.
"""

import http.server
import socket
import sys
import threading

UPSTREAM = ("127.0.0.1", int(sys.argv[1]))
lock = threading.Lock()
conns = set()  # open sockets, client and upstream sides
state = {"up": False, "listener": None, "port": 0, "forwarded": 0}


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    with lock:
        for s in (src, dst):
            if s in conns:
                conns.discard(s)
                s.close()


def serve(listener):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed by /down
        try:
            upstream = socket.create_connection(UPSTREAM, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        with lock:
            if not state["up"]:
                client.close()
                upstream.close()
                continue
            conns.update((client, upstream))
            state["forwarded"] += 1
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


def up():
    with lock:
        if state["up"]:
            return
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", state["port"]))
        s.listen(64)
        state["port"] = s.getsockname()[1]
        state["listener"] = s
        state["up"] = True
    threading.Thread(target=serve, args=(s,), daemon=True).start()


def down():
    with lock:
        if not state["up"]:
            return
        state["up"] = False
        listener = state["listener"]
        state["listener"] = None
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        for s in list(conns):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        conns.clear()


class Control(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/down":
            down()
        elif self.path == "/up":
            up()
        elif self.path != "/state":
            self.send_error(404)
            return
        with lock:
            body = f"{'up' if state['up'] else 'down'} {state['forwarded']}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    up()
    control = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Control)
    print(f"{state['port']} {control.server_address[1]}", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
