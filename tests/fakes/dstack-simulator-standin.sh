#!/bin/sh
# Stands in for dstack-simulator (guest-agent-simulator/src/main.rs) in tests of the
# local target, in what kmsrun relies on: `-c FILE` (else ./dstack.toml), the settings
# under [default.core.simulator] (attestation_file, patch_report_data,
# mock_attestation_seed checked like mock_attestation::parse_seed), appkeys.json and
# sys-config.json parsed and the attestation file read at startup ("Failed to read
# simulator attestation file: PATH"), and the
# guest-agent socket created where [internal].address says (unix:./dstack.sock,
# relative to the working directory), answering Info and Attest there until killed.
exec python3 - "$@" <<'PY'
import hashlib, http.server, json, os, signal, socketserver, sys, tomllib

args = sys.argv[1:]
config = None
while args:
    if args[0] in ("-c", "--config") and len(args) > 1:
        config = args[1]; args = args[2:]
    elif args[0] in ("-w", "--watchdog"):
        args = args[1:]
    else:
        print("error: unexpected argument '%s'" % args[0], file=sys.stderr); sys.exit(2)
# The built-in defaults (guest-agent-simulator/dstack.toml, include_str! in main.rs:22),
# then ./dstack.toml, then -c FILE, key by key (load_config/src/lib.rs:46-62).
layers = {"default": {"core": {"simulator": {"attestation_file": "attestation.bin", "patch_report_data": True}}},
          "internal": {"address": "unix:./dstack.sock"}}
def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict): merge(dst[k], v)
        else: dst[k] = v
for path in ["dstack.toml", config]:
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            merge(layers, tomllib.load(f))
sim = layers.get("default", {}).get("core", {}).get("simulator")
if not sim or "attestation_file" not in sim:
    print("Error: Failed to extract simulator core config: missing field `attestation_file`", file=sys.stderr); sys.exit(1)
seed = sim.get("mock_attestation_seed")
if seed is not None:
    try:
        raw = bytes.fromhex(seed)
    except ValueError:
        print("Error: mock attestation seed must be hex", file=sys.stderr); sys.exit(1)
    if len(raw) != 32:
        print("Error: mock attestation seed must be 32 bytes", file=sys.stderr); sys.exit(1)
att = sim["attestation_file"]
if not os.path.exists(att):
    print("Error: Failed to read simulator attestation file: %s" % att, file=sys.stderr); sys.exit(1)
print("WARN starting dstack guest-agent simulator (stand-in) attestation_file=%s patch_report_data=%s signed_quotes=%s"
      % (att, str(sim.get("patch_report_data", True)).lower(), str(seed is not None).lower()), file=sys.stderr, flush=True)
# The guest agent parses its keys and sys-config at startup (guest-agent/src/rpc_service.rs:159-163).
core = layers.get("default", {}).get("core", {})
for key, default, what in [("keys_file", "appkeys.json", "app keys"), ("sys_config_file", "sys-config.json", "VM config")]:
    try:
        json.load(open(core.get(key, default)))
    except (OSError, ValueError) as e:
        print("Error: Failed to create simulator app state: Failed to parse %s: %s" % (what, e), file=sys.stderr); sys.exit(1)
addr = layers.get("internal", {}).get("address", "unix:./dstack.sock")
path = addr[len("unix:"):] if addr.startswith("unix:") else "dstack.sock"
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
if os.path.exists(path):
    os.unlink(path)

# The guest agent's internal prpc service, as the SDK calls it (POST http://localhost/<Method>
# with JSON over the socket: sdk/python/src/dstack_sdk/dstack_client.py; the service is
# mounted at "/", guest-agent/src/server.rs:31), in two methods:
#   Info   -> vm_config (sys-config.json's, as rpc_service.rs:161-165,246-250), app_name,
#             compose_hash, os_image_hash of that vm_config
#   Attest -> {"attestation": hex} over the report data: NOT a quote, a marked text naming
#             the fixture's SHA-256, the report data, and whether it is signed (seeded)
fixture = open(att, "rb").read()
sys_config = json.load(open(core.get("sys_config_file", "sys-config.json")))
compose = open(core.get("compose_file", "app-compose.json"), "rb").read() if os.path.exists(core.get("compose_file", "app-compose.json")) else b""

def info():
    vm = sys_config.get("vm_config") or ""
    try: osh = json.loads(vm).get("os_image_hash", "") if vm else ""
    except ValueError: osh = ""
    try: name = json.loads(compose).get("name", "")
    except ValueError: name = ""
    return {"vm_config": vm, "app_name": name, "compose_hash": hashlib.sha256(compose).hexdigest(), "os_image_hash": osh}

def attest(body):
    rd = bytes.fromhex(json.loads(body or b"{}").get("report_data", ""))
    doc = {"stand_in": "kmsrun stand-in simulator attestation, not a quote", "fixture_sha256": hashlib.sha256(fixture).hexdigest(),
           "report_data": rd.hex(), "signed": seed is not None}
    return {"attestation": json.dumps(doc, sort_keys=True).encode().hex()}

class Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self): return "unix"
    def log_message(self, fmt, *a): sys.stderr.write("guest-agent stand-in: " + (fmt % a) + "\n")
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if self.path.split("?")[0] == "/Info": out, status = info(), 200
            elif self.path.split("?")[0] == "/Attest": out, status = attest(body), 200
            else: out, status = {"error": "stand-in: method not implemented: " + self.path}, 404
        except Exception as e:
            out, status = {"error": str(e)}, 400
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

srv = Server(path, Handler)
try:
    srv.serve_forever()
finally:
    os.unlink(path)
PY
