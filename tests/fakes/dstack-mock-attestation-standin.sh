#!/bin/sh
# Stands in for `dstack-mock-attestation serve` (crates/mock-attestation/src/main.rs:26-36,
# 52-79) in tests of the local target, in what kmsrun relies on: the same arguments
# (--listen ADDR --config tee-simulator.json --output DIR), the seed read from the
# config and checked like parse_seed (lib.rs:41-46), the roots written to --output
# before serving (tdx-root-ca.pem, sev-snp-root-ca.pem, tpm-root-ca.pem, nsm-root-ca.pem:
# server.rs:46-56), then HTTP on the collateral paths (server.rs:59-76) until killed.
# Its "roots" are not certificates: a PEM-shaped text naming the SHA-256 of the seed,
# which the KMS stand-in (dstack-kms-emulator.sh) compares with its simulator's seed.
exec python3 - "$@" <<'PY'
import hashlib, http.server, json, os, signal, socketserver, sys

args = sys.argv[1:]
if not args or args[0] != "serve":
    print("dstack-mock-attestation stand-in: only 'serve' is supported", file=sys.stderr); sys.exit(2)
opts = {"--listen": "127.0.0.1:8088", "--output": None, "--config": None}
i = 1
while i < len(args):
    if args[i] not in opts or i + 1 >= len(args):
        print("error: unexpected argument '%s'" % args[i], file=sys.stderr); sys.exit(2)
    opts[args[i]] = args[i + 1]; i += 2
if not opts["--config"]:
    print("stand-in: serving without --config (a random seed) is not supported", file=sys.stderr); sys.exit(2)
try:
    config = json.load(open(opts["--config"]))
except Exception as e:
    print("Error: %s" % e, file=sys.stderr); sys.exit(1)
seed = config.get("mock_attestation_seed")
if seed is None:
    print("Error: mock_attestation_seed missing", file=sys.stderr); sys.exit(1)
try:
    raw = bytes.fromhex(seed)
except ValueError:
    print("Error: mock attestation seed must be hex", file=sys.stderr); sys.exit(1)
if len(raw) != 32:
    print("Error: mock attestation seed must be 32 bytes", file=sys.stderr); sys.exit(1)
fp = hashlib.sha256(raw).hexdigest()

def root(kind):
    return "-----BEGIN CERTIFICATE-----\nkmsrun stand-in %s root for seed-sha256 %s\n-----END CERTIFICATE-----\n" % (kind, fp)

if opts["--output"]:
    os.makedirs(opts["--output"], exist_ok=True)
    for name, kind in [("tdx-root-ca.pem", "tdx"), ("sev-snp-root-ca.pem", "sev-snp"),
                       ("tpm-root-ca.pem", "tpm"), ("nsm-root-ca.pem", "nsm")]:
        with open(os.path.join(opts["--output"], name), "w") as f:
            f.write(root(kind))

PATHS = {"/sgx/certification/v4/pckcrl", "/sgx/certification/v4/rootcacrl", "/sgx/certification/v4/tcb",
         "/sgx/certification/v4/qe/identity", "/tdx/certification/v4/tcb", "/tdx/certification/v4/qe/identity",
         "/tpm/aia/root.pem", "/tpm/aia/intermediate.der", "/tpm/crl/root.crl", "/tpm/crl/intermediate.crl"}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in PATHS or self.path.startswith("/vcek/v1/Milan/"):
            body = ("kmsrun stand-in collateral %s for seed-sha256 %s\n" % (self.path, fp)).encode()
            self.send_response(200)
        else:
            body = b""
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *a):
        sys.stderr.write("collateral stand-in: " + (fmt % a) + "\n")

host, port = opts["--listen"].rsplit(":", 1)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
socketserver.TCPServer.allow_reuse_address = True
try:
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
except OSError as e:
    print("Error: %s" % e, file=sys.stderr); sys.exit(1)
print("mock collateral stand-in listening on http://%s:%s" % (host, port), file=sys.stderr, flush=True)
srv.serve_forever()
PY
