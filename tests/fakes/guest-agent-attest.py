# A fake guest-agent socket for tests of the local target's attested callers: serves
# POST /Attest ({"report_data": hex} -> {"attestation": hex}) and POST /Info over the Unix
# socket given as argv[1], recording each request body (one JSON line) in argv[2].
# The attestation it returns is the marker b"fake-attestation:" + report data: it proves
# the plumbing (which key was attested, where the bytes land), not any TEE.
import json, os, signal, socketserver, sys
from http.server import BaseHTTPRequestHandler

path, log = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def address_string(self): return "unix"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "body": body.decode()}) + "\n")
        if self.path == "/Attest":
            rd = json.loads(body)["report_data"]
            out = {"attestation": (b"fake-attestation:" + bytes.fromhex(rd)).hex()}
        elif self.path == "/Info":
            out = {"app_id": "11" * 20, "instance_id": "22" * 20, "device_id": "33" * 32,
                   "compose_hash": "44" * 32, "os_image_hash": "55" * 32, "vm_config": '{"os_image_hash":"' + "55" * 32 + '"}'}
        else:
            self.send_response(404); self.end_headers(); return
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

if os.path.exists(path): os.unlink(path)
srv = socketserver.UnixStreamServer(path, H)
try:
    srv.serve_forever()
finally:
    os.unlink(path)
