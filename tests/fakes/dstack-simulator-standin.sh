#!/bin/sh
# Stands in for dstack-simulator in tests of the local target: like the real
# simulator it listens on ./dstack.sock in its working directory and runs
# until killed. It answers nothing; the KMS emulator only checks that the
# guest-agent socket exists (its attestation is emulated).
exec python3 -c '
import os, signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
path = "dstack.sock"
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
try:
    while True:
        conn, _ = s.accept()
        conn.close()
finally:
    os.unlink(path)
'
