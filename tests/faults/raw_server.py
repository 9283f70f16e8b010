#!/usr/bin/env python3
"""Raw-socket faults the kmsrun HTTP server cannot produce, for the fault matrix.

    python3 tests/faults/raw_server.py MODE

Prints "listening on http://127.0.0.1:PORT" (a free loopback port), serves until
SIGTERM or 10 minutes. Modes:
  slowloris  sends a status line and headers one byte every 0.5 s, never the body
  tlstrunc   reads the TLS ClientHello, answers half a TLS record, closes
  shortbody  promises Content-Length: 1000, sends 10 bytes, closes
  reset      accepts and closes at once (no answer)
  silent     accepts, never reads nor answers (the connection stays open)
"""
import signal
import socket
import sys
import threading
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else ""
MODES = ("slowloris", "tlstrunc", "shortbody", "reset", "silent")
if MODE not in MODES:
    sys.stderr.write("usage: raw_server.py " + "|".join(MODES) + "\n")
    sys.exit(2)


def read_request(conn):
    conn.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def handle(conn):
    try:
        if MODE == "reset":
            return
        if MODE == "silent":
            time.sleep(600)
            return
        if MODE == "tlstrunc":
            conn.settimeout(10)
            conn.recv(4096)  # the ClientHello
            # A handshake record header announcing 512 bytes, then 7 of them.
            conn.sendall(b"\x16\x03\x03\x02\x00" + b"\x02\x00\x01\xfc\x03\x03\x00")
            time.sleep(0.1)
            return
        read_request(conn)
        if MODE == "shortbody":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"device_i")
            time.sleep(0.1)
            return
        if MODE == "slowloris":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10000
            for i in range(len(head)):
                conn.sendall(head[i:i + 1])
                time.sleep(0.5)
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening on http://127.0.0.1:%d" % srv.getsockname()[1], flush=True)
    srv.settimeout(1)
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
