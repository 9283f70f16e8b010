# For dstack-kms-emulator.sh: what the real dstack-kms would get from the guest agent
# at DSTACK_AGENT_ADDRESS, read from the stand-in simulator's files (its working
# directory holds the socket), printed as kms-sim emulator switches, one per line:
#   --identity-from <attestation file>   the attested identity is the fixture's
#   --vm-config <json>                   the vm_config embedded in the attestation
#   --reported-vm-config <json>          the one the simulator's Info reports (its sys-config.json)
#   --unverifiable-quote <why>           when the KMS could not verify the quote:
#     no mock_attestation_seed (patched, unsigned fixture quote), or kms.toml not
#     trusting the root of that seed ([core.attestation] root_ca.tdx, urls.pccs).
import hashlib, http.client, json, os, socket, sys, tomllib

kms_toml = sys.argv[1]
addr = os.environ.get("DSTACK_AGENT_ADDRESS", "")
if not addr.startswith("unix:") or not os.path.exists(addr[5:]):
    sys.exit(0)  # no guest agent: the emulator says so itself
d = os.path.dirname(os.path.abspath(addr[5:]))
def load(path):
    try:
        with open(path, "rb") as f: return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError): return {}
dstack = load(os.path.join(d, "dstack.toml"))
core = dstack.get("default", {}).get("core", {})
sim = core.get("simulator", {})
att_path = os.path.join(d, sim.get("attestation_file", "attestation.bin"))
out = []
att = open(att_path, "rb").read() if os.path.exists(att_path) else b""
out += ["--identity-from", att_path]
at = att.find(b'"vm_config":"')
if at >= 0:
    attested, _ = json.JSONDecoder().raw_decode(att[at + len(b'"vm_config":'):].decode("utf-8", "replace"))
    out += ["--vm-config", attested]
# What the guest agent's Info reports, asked over its socket as the KMS does
# (onboard_service.rs:190-194); a simulator that does not answer fails the KMS here.
class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)
try:
    c = UnixHTTP(addr[5:])
    c.request("POST", "/Info", body=b"{}", headers={"Content-Type": "application/json"})
    reported = json.loads(c.getresponse().read()).get("vm_config")
except (OSError, ValueError, http.client.HTTPException) as e:
    print("dstack-kms stand-in: the guest agent's Info failed: %s" % e, file=sys.stderr)
    sys.exit(1)
if isinstance(reported, str) and reported:
    out += ["--reported-vm-config", reported]
a = load(kms_toml).get("core", {}).get("attestation", {})
seed = sim.get("mock_attestation_seed")
root = a.get("root_ca", {}).get("tdx")
why = None
if seed is None:
    why = "the simulator patched the fixture quote's report data without re-signing it (no mock_attestation_seed)"
elif not root:
    why = "the quote is signed by a development root and kms.toml trusts the vendor roots only (no core.attestation.root_ca.tdx)"
elif not a.get("urls", {}).get("pccs"):
    why = "no core.attestation.urls.pccs: collateral would come from the default PCCS, not the development one"
else:
    fp = hashlib.sha256(bytes.fromhex(seed)).hexdigest()
    try: text = open(root).read()
    except OSError: text = ""
    if fp not in text:
        why = "core.attestation.root_ca.tdx is not the root of the simulator's mock_attestation_seed"
if why: out += ["--unverifiable-quote", why]
for x in out: print(x)
