#!/bin/bash
# The fault matrix: each row injects one fault and states the expected outcome.
# For every row the run must end with the expected exit code and a clear message
# on the terminal; and, whenever the run got as far as opening its output
# directory: no process it registered is left (by pid, from the ledger), every
# registered cleanup ran (ledger), report.json and evidence.tar.gz exist,
# report.json carries the same exit code, the append-only streams parse line by
# line, and no private key handed out (emulator --leak-keys-to, fault servers'
# --leak-to) is anywhere in the output directory or the archive.
#
# Works with any build: KMSRUN=build-faults-asan/kmsrun runs it under ASan/UBSan.
# FAULTS_ONLY=REGEX runs only the matching rows (by name).
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
F=$SRC/tests/faults
SELF_AUTH=$SRC/runbooks/self_auth.lua
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
started=$(date +%s)

wait_for() { # FILE PATTERN [TRIES]: grep -a PATTERN in FILE, every 50 ms, up to 30 s
  for _ in $(seq "${3:-600}"); do grep -aq -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
wait_file() { # PATH: up to 30 s
  for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.05; done
  return 1
}
# Gone = no such process, or a zombie (exited; in some containers pid 1 never reaps orphans).
gone() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}
ledger_pids() { grep -ao '"kind":"process","pid":[0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$' | sort -u | tr '\n' ' '; }

# Helper servers started for a row; stopped after it (each also stops by itself
# after 10 minutes). Not called in $(...): the pid must be recorded in this shell.
helpers=""
helper_url=""
start_helper() { # LOG CMD...: starts a helper server; sets helper_url
  local log=$1
  shift
  "$@" >"$log" 2>"$log.err" &
  helpers="$helpers $!"
  helper_url=""
  wait_for "$log" "^listening on " 200 || { echo "helper did not start: $* $(cat "$log.err")" >&2; return 1; }
  helper_url=$(sed -n 's/^listening on //p' "$log" | head -1)
}
stop_helpers() {
  for p in $helpers; do kill "$p" 2>/dev/null; done
  for p in $helpers; do wait "$p" 2>/dev/null; done
  helpers=""
}
trap 'stop_helpers; rm -rf "$WORK"' EXIT

# The output directory's evidence, checked with Python: streams parse line by line
# (valid UTF-8 JSON), report.json's exit code, every registration undone, no leaked key.
cat >"$WORK/check_out.py" <<'PYEOF'
import json, os, re, sys, tarfile
out, want, leakfile, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
problems = []
def lines(name):
    p = os.path.join(out, name)
    if not os.path.isfile(p): return []
    with open(p, "rb") as f: data = f.read()
    res = []
    for i, l in enumerate(data.decode("utf-8").splitlines(), 1):
        try: res.append(json.loads(l))
        except Exception as e: problems.append(f"{name}:{i} does not parse: {e}")
    return res
ledger = lines("ledger.ndjson")
lines("transcript.ndjson")
if mode == "full":
    try:
        r = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
        if r.get("exit_code") != want: problems.append(f"report.json exit_code {r.get('exit_code')} != {want}")
    except Exception as e: problems.append(f"report.json: {e}")
    if not os.path.getsize(os.path.join(out, "evidence.tar.gz")): problems.append("empty evidence.tar.gz")
    import xml.dom.minidom
    try: xml.dom.minidom.parse(os.path.join(out, "junit.xml"))
    except Exception as e: problems.append(f"junit.xml: {e}")
    regs = {e["id"]: e for e in ledger if e.get("action") == "register"}
    done = {e["id"] for e in ledger if e.get("action") in ("undone", "undo_failed")}
    left = [regs[i]["description"] for i in regs if i not in done]
    if left: problems.append(f"cleanups that never ran: {left}")
# Leak scan: PEM body lines and 64-hex raw keys from every leak file.
keys = set()
if os.path.exists(leakfile):
    text = open(leakfile).read()
    for pem in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", text, re.S):
        keys.update(l for l in pem.split() if len(l) >= 40)
    keys.update(re.findall(r"\b[0-9a-f]{64}\b", text))
blobs = []
for d, _, files in os.walk(out):
    for f in files:
        p = os.path.join(d, f)
        data = open(p, "rb").read()
        blobs.append((p, data.decode("latin-1")))
        if f.endswith(".tar.gz"):
            try:
                with tarfile.open(p) as t:
                    for m in t.getmembers():
                        if m.isfile(): blobs.append((p + "!" + m.name, t.extractfile(m).read().decode("latin-1")))
            except Exception as e: problems.append(f"{p}: {e}")
hits = sorted({(p, k[:12]) for p, b in blobs for k in keys if k in b})
if hits: problems.append(f"leaked keys: {hits[:5]}")
print(f"{len(keys)} secret fragments checked" if not problems else "; ".join(problems))
sys.exit(1 if problems else 0)
PYEOF

# The matrix. Columns: name | expected exit | message on the terminal | runbook | options
# Runbooks: self_auth (runbooks/), mini, webhook, fake_kms, bad_call (tests/faults/),
# syntax_error, runtime_error, bad_argument (tests/runbooks/), serve (no runbook).
# Options (space separated):
#   fault=SPEC       an emulator fault switch (--var sim_faults=..., repeatable)
#   env=K=V          environment of the run; @URL is the helper's URL
#   var=K=V          --var K=V; @URL is the helper's URL, @HTTPS the same as https://
#   arg=X            an extra kmsrun argument (before the runbook)
#   server=MODE[,boot-only]  start tests/faults/fault_server.lua MODE first
#   raw=MODE         start tests/faults/raw_server.py MODE first
#   signal=SIG@WHAT  send SIG once WHAT shows: a text on the terminal (-v output), or
#                    file:REL (a file in the output directory); then also 0.2 s pause
#   out=readonly|underfile  an output directory that cannot be created
#   noout            the run never opens its output directory (no report expected)
#   cleanup          (after SIGKILL) run `kmsrun cleanup OUTDIR` and check it
#   cmd=NAME         a standalone command row (see run_cmd)
ROWS=$(cat <<'EOF'
auth server down (refused)       | 1   | tcp connect error: Connection refused       | webhook   | env=FAULT_AUTH_URL=http://127.0.0.1:1
auth server answers 500          | 1   | returned 500 Internal Server Error          | webhook   | server=status500 env=FAULT_AUTH_URL=@URL
auth server invalid JSON         | 1   | failed to decode response                   | webhook   | server=badjson env=FAULT_AUTH_URL=@URL
auth server wrong JSON types     | 1   | invalid type: string "yes", expected a boolean | webhook | server=wrongtypes env=FAULT_AUTH_URL=@URL
auth server huge answer          | 1   | response body larger than                   | webhook   | server=huge env=FAULT_AUTH_URL=@URL
auth server hangs on bootAuth    | 4   | waiting for: http.request POST              | webhook   | server=hang,boot-only env=FAULT_AUTH_URL=@URL env=FAULT_CASE_TIMEOUT=2
auth server hangs entirely       | 3   | HTTP 200 from kms-a Onboard.GetAttestationInfo within 2 s | webhook | server=hang env=FAULT_AUTH_URL=@URL env=FAULT_WAIT_TIMEOUT=2
auth server slow-loris           | 3   | timed out after                             | webhook   | raw=slowloris env=FAULT_AUTH_URL=@URL env=FAULT_WAIT_TIMEOUT=2
KMS crashes mid-RPC (Bootstrap)  | 1   | rpc kms-src Onboard.Bootstrap               | self_auth | fault=crash=Onboard.Bootstrap
KMS crashes mid-RPC (runtime)    | 1   | rpc kms-a KMS.GetTempCaCert                 | mini      | fault=crash=KMS.GetTempCaCert
KMS never listens (listen-delay) | 3   | kms-a did not listen within                 | mini      | fault=listen-delay=60 env=FAULT_WAIT_TIMEOUT=2
KMS never ready (probe gets 500) | 3   | HTTP 200 from kms-a Onboard.GetAttestationInfo within 2 s | mini | fault=status500=Onboard.GetAttestationInfo env=FAULT_WAIT_TIMEOUT=2
KMS never ready after finish     | 1   | HTTP 200 from kms-a KMS.GetMeta within 2 s  | mini      | fault=status500=KMS.GetMeta env=FAULT_WAIT_TIMEOUT=2
slow RPC, case deadline          | 4   | waiting for: http.request POST http://127.0.0.1 | mini  | fault=slow=Onboard.Bootstrap:60 env=FAULT_CASE_TIMEOUT=2
slow RPC, step deadline          | 4   | step 'bootstrap within its step deadline' timed out after 2 s; waiting for: http.request POST | mini | fault=slow=Onboard.Bootstrap:60 env=FAULT_STEP_TIMEOUT=2
slow RPC, run --timeout          | 4   | Onboard.Onboard?json                        | self_auth | fault=slow=Onboard.Onboard:60 arg=--timeout=3
status500 fault (Bootstrap)      | 1   | HTTP 500, body not JSON                     | self_auth | fault=status500=Onboard.Bootstrap
status500 fault (GetTempCaCert)  | 1   | Request failed with status=500 Internal Server Error | self_auth | fault=status500=KMS.GetTempCaCert
badjson fault (Bootstrap)        | 1   | HTTP 200, body not JSON                     | self_auth | fault=badjson=Onboard.Bootstrap
badjson fault (source KMS)       | 1   | Failed to deserialize response              | self_auth | fault=badjson=KMS.GetTempCaCert
unknown fault switch             | 3   | unknown fault 'nonsense=1'                  | mini      | fault=nonsense=1
SIGINT during deploy             | 130 | SIGINT received                             | mini      | fault=listen-delay=60 signal=INT@... deploy kms-a
SIGTERM during deploy            | 130 | SIGTERM received                            | mini      | fault=listen-delay=60 signal=TERM@... deploy kms-a
SIGINT during wait_ready         | 130 | SIGINT received                             | mini      | fault=status500=Onboard.GetAttestationInfo signal=INT@... wait_ready kms-a
SIGTERM during wait_ready        | 130 | SIGTERM received                            | mini      | fault=status500=Onboard.GetAttestationInfo signal=TERM@... wait_ready kms-a
SIGINT during case 1             | 130 | SIGINT received                             | self_auth | fault=slow=Onboard.Bootstrap:60 signal=INT@... rpc kms-src Onboard.Bootstrap
SIGTERM during case 1            | 130 | SIGTERM received                            | self_auth | fault=slow=Onboard.Bootstrap:60 signal=TERM@... rpc kms-src Onboard.Bootstrap
SIGINT during case 3             | 130 | SIGINT received                             | self_auth | fault=slow=Onboard.Onboard:60 signal=INT@... rpc kms-dst Onboard.Onboard
SIGTERM during case 3            | 130 | SIGTERM received                            | self_auth | fault=slow=Onboard.Onboard:60 signal=TERM@... rpc kms-dst Onboard.Onboard
SIGINT during archive (teardown) | 130 | SIGINT received                             | mini      | env=FAULT_TEARDOWN_SLEEP=60 signal=INT@file:evidence.tar.gz
SIGTERM during archive (teardown)| 130 | SIGTERM received                            | mini      | env=FAULT_TEARDOWN_SLEEP=60 signal=TERM@file:evidence.tar.gz
SIGKILL in case 3, then cleanup  | 137 | case 3/6                                    | self_auth | fault=slow=Onboard.Onboard:60 signal=KILL@... rpc kms-dst Onboard.Onboard cleanup
runbook syntax error             | 2   | syntax_error.lua:3:                         | syntax_error | noout
runtime error inside a case      | 2   | attempt to index a nil value                | runtime_error |
wrong arguments at load time     | 2   | unknown option 'attestaton' (did you mean 'attestation'?) | bad_argument | noout
wrong argument type in a case    | 2   | rpc: argument #2 (method) must be string, got number | bad_call | env=FAULT_BAD_CALL=rpc-method
unknown option in a case         | 2   | wait_ready: unknown option 'timout'         | bad_call  | env=FAULT_BAD_CALL=wait-option
unknown rpc option in a case     | 2   | rpc: unknown option 'retries'               | bad_call  | env=FAULT_BAD_CALL=rpc-option
not a response in a case         | 2   | expect_ok: argument #1 (res) must be response, got string | bad_call | env=FAULT_BAD_CALL=expect-type
--timeout not a number           | 2   | --timeout expects a number of seconds       | mini      | arg=--timeout=soon noout
output directory not writable    | 2   | cannot create the output directory          | mini      | out=readonly noout
output directory under a file    | 2   | cannot create the output directory          | mini      | out=underfile noout
existing --out not empty         | 2   | is not empty                                | mini      | out=ledgerdir noout
port in use: kmsrun serve auth   | 1   | address already in use                      | serve     | cmd=auth-port-taken noout
port in use: kmsrun serve kms-sim| 1   | address already in use                      | serve     | cmd=sim-port-taken noout
hostile KMS: binary garbage      | 1   | body not JSON                               | fake_kms  | server=garbage var=kms_url=@URL
hostile KMS: truncated JSON      | 1   | body not JSON                               | fake_kms  | server=badjson var=kms_url=@URL
hostile KMS: wrong JSON types    | 1   | field device_id missing or empty            | fake_kms  | server=wrongtypes var=kms_url=@URL
hostile KMS: top-level number    | 1   | field device_id missing or empty            | fake_kms  | server=number var=kms_url=@URL
hostile KMS: JSON null           | 1   | field device_id missing or empty            | fake_kms  | server=null var=kms_url=@URL
hostile KMS: empty 200           | 1   | body not JSON                               | fake_kms  | server=empty var=kms_url=@URL
hostile KMS: error of wrong type | 1   | HTTP 400, body: {"error":{"nested":[1,2]}}  | fake_kms  | server=errortype var=kms_url=@URL
hostile KMS: 100000-deep JSON    | 1   | body not JSON                               | fake_kms  | server=deep var=kms_url=@URL
hostile KMS: 900-deep JSON       | 1   | field device_id missing or empty            | fake_kms  | server=deep900 var=kms_url=@URL
hostile KMS: encoder-special keys| 0   | cases: 1 passed                             | fake_kms  | server=order var=kms_url=@URL
hostile KMS: metatable-like keys | 0   | cases: 1 passed                             | fake_kms  | server=metatable var=kms_url=@URL
hostile KMS: 20 MiB body         | 1   | response body larger than 16777216 bytes    | fake_kms  | server=huge var=kms_url=@URL
hostile KMS: hangs               | 1   | timed out after 2 s                         | fake_kms  | server=hang var=kms_url=@URL var=rpc_timeout=2
hostile KMS: slow-loris headers  | 1   | timed out after 2 s                         | fake_kms  | raw=slowloris var=kms_url=@URL var=rpc_timeout=2
hostile KMS: accepts, never reads| 1   | timed out after 2 s                         | fake_kms  | raw=silent var=kms_url=@URL var=rpc_timeout=2
hostile KMS: truncated TLS       | 1   | tls failure                                 | fake_kms  | raw=tlstrunc var=kms_url=@HTTPS var=method=KMS.GetMeta
hostile KMS: body cut short      | 1   | connection closed by peer                   | fake_kms  | raw=shortbody var=kms_url=@URL
hostile KMS: connection reset    | 1   | connection closed by peer                   | fake_kms  | raw=reset var=kms_url=@URL
hostile KMS: key in odd field    | 0   | cases: 1 passed                             | fake_kms  | server=pemleak var=kms_url=@URL
hostile KMS: key in error text   | 1   | HTTP 500, body not JSON                     | fake_kms  | server=pemerror var=kms_url=@URL
EOF
)

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }

# Standalone command rows: print the command's exit code; output in $2.
run_cmd() { # NAME OUTFILE
  local url port code
  case $1 in
    auth-port-taken|sim-port-taken)
      # Any listener takes the port; the fault server ends by itself if this script dies.
      start_helper "$WORK/taker.log" "$KMSRUN" script "$F/fault_server.lua" status500 || return 99
      port=${helper_url##*:}
      if [ "$1" = auth-port-taken ]; then
        timeout 60 "$KMSRUN" serve auth --port "$port" --config "$WORK/none.json" >"$2" 2>&1
      else
        printf '[rpc]\naddress = "127.0.0.1"\nport = %s\n[core]\ncert_dir = "%s"\n[core.onboard]\nenabled = true\naddress = "127.0.0.1"\nport = %s\n' \
          "$port" "$WORK/sim-certs" "$port" >"$WORK/taken.toml"
        timeout 60 "$KMSRUN" serve kms-sim -c "$WORK/taken.toml" >"$2" 2>&1
      fi
      code=$?
      ;;
    *) echo "unknown cmd $1" >"$2"; code=99 ;;
  esac
  return $code
}

n=0
rows_run=0
while IFS='|' read -r name want msg runbook opts; do
  name=$(trim "$name"); want=$(trim "$want"); msg=$(trim "$msg"); runbook=$(trim "$runbook"); opts=$(trim "$opts")
  [ -z "$name" ] && continue
  n=$((n + 1))
  if [ -n "${FAULTS_ONLY:-}" ] && ! [[ $name =~ $FAULTS_ONLY ]]; then continue; fi
  rows_run=$((rows_run + 1))
  out="$WORK/out-$n"
  log="$WORK/log-$n"
  leak="$WORK/leak-$n"
  : >"$leak"
  faults="" envs=() vars=() args=() sig="" signame="" cleanup="" noout="" outmode="" url="" cmd=""
  # Options are space separated, except that a signal's WHAT runs to the end of the
  # field (it may contain spaces); put it last.
  rest=$opts
  while [ -n "$rest" ]; do
    if [[ $rest == signal=* ]]; then
      sig=${rest#signal=}
      if [[ $sig == *" cleanup" ]]; then cleanup=1; sig=${sig% cleanup}; fi
      break
    fi
    tok=${rest%% *}
    [ "$tok" = "$rest" ] && rest="" || rest=${rest#* }
    case $tok in
      fault=*) faults="${faults:+$faults,}${tok#fault=}" ;;
      env=*) envs+=("${tok#env=}") ;;
      var=*) vars+=("${tok#var=}") ;;
      arg=*) args+=("${tok#arg=}") ;;
      server=*)
        mode=${tok#server=}
        extra=()
        [[ $mode == *,boot-only ]] && { mode=${mode%,boot-only}; extra=(--boot-only); }
        start_helper "$WORK/helper-$n.log" "$KMSRUN" script "$F/fault_server.lua" "$mode" "${extra[@]}" --leak-to "$leak"
        url=$helper_url ;;
      raw=*) start_helper "$WORK/helper-$n.log" "$PY" "$F/raw_server.py" "${tok#raw=}"; url=$helper_url ;;
      out=*) outmode=${tok#out=} ;;
      noout) noout=1 ;;
      cleanup) cleanup=1 ;;
      cmd=*) cmd=${tok#cmd=} ;;
    esac
  done
  for i in "${!envs[@]}"; do envs[$i]=${envs[$i]//@URL/$url}; done
  for i in "${!vars[@]}"; do v=${vars[$i]//@HTTPS/${url/http:/https:}}; vars[$i]=${v//@URL/$url}; done

  case $runbook in
    self_auth) rb=$SELF_AUTH ;;
    syntax_error|runtime_error|bad_argument) rb=$SRC/tests/runbooks/$runbook.lua ;;
    *) rb=$F/$runbook.lua ;;
  esac
  case $outmode in
    readonly)
      if [ "$(id -u)" = 0 ]; then out=/proc/1/kmsrun-faults-out  # root writes anywhere else
      else mkdir -p "$WORK/ro" && chmod 555 "$WORK/ro" && out="$WORK/ro/out"; fi ;;
    underfile) echo x >"$WORK/afile-$n" && out="$WORK/afile-$n/out" ;;
    ledgerdir) mkdir -p "$out/ledger.ndjson" ;;  # a directory where the ledger file goes
  esac
  runargs=(-v --out "$out" --var "sim_leak_keys_to=$leak")
  [ -n "$faults" ] && runargs+=(--var "sim_faults=$faults")
  for v in "${vars[@]}"; do runargs+=(--var "$v"); done
  runargs+=("${args[@]}")

  t0=$(date +%s.%N)
  if [ -n "$cmd" ]; then
    run_cmd "$cmd" "$log"; code=$?
  elif [ -z "$sig" ]; then
    env "${envs[@]}" timeout 120 "$KMSRUN" "${runargs[@]}" "$rb" >"$log" 2>&1
    code=$?
  else
    env "${envs[@]}" "$KMSRUN" "${runargs[@]}" "$rb" >"$log" 2>&1 &
    kpid=$!
    what=${sig#*@}
    signame=${sig%%@*}
    if [[ $what == file:* ]]; then wait_file "$out/${what#file:}"; else wait_for "$log" "$what"; fi
    reached=$?
    sleep 0.2
    pids_before=$(ledger_pids "$out/ledger.ndjson")
    kill -"$signame" "$kpid" 2>/dev/null
    # A hang after the signal is a failure of its own; bounded.
    for _ in $(seq 600); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$kpid" 2>/dev/null; then not_ok "$name: kmsrun exits after SIG$signame" "still running after 30 s"; kill -KILL "$kpid"; fi
    wait "$kpid" 2>/dev/null
    code=$?
    [ "$reached" -eq 0 ] || not_ok "$name: the run reached '$what' before the signal" "$(tail -5 "$log")"
  fi
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  row_helpers=$helpers
  stop_helpers
  for p in $row_helpers; do gone "$p" || not_ok "$name: helper server $p stopped"; done

  printf '%-34s | expected %-3s | observed %-3s | %5.1f s\n' "$name" "$want" "$code" "$secs" >>"$WORK/matrix.txt"

  # 1. Exit code and message.
  if [ "$code" -eq "$want" ]; then ok "$name: exit $code ($(printf '%.1f' "$secs") s)"
  else not_ok "$name: exit $want" "got exit $code after $(printf '%.1f' "$secs") s" "$(tail -n 25 "$log")"; fi
  if grep -aqF -- "$msg" "$log"; then ok "$name: says '$msg'"
  else not_ok "$name: says '$msg'" "$(tail -n 25 "$log")"; fi
  if grep -aqE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|LeakSanitizer' "$log" "$out"/logs/*.log 2>/dev/null; then
    not_ok "$name: no sanitizer report" "$(grep -ahE -A5 'Sanitizer|runtime error:' "$log" "$out"/logs/*.log | head -20)"
  fi

  [ -n "$noout" ] && { [ -e "$out/report.json" ] && not_ok "$name: no output expected" "$(ls "$out")"; continue; }

  # 2. No process left, by pid, from the ledger.
  pids=$(ledger_pids "$out/ledger.ndjson")
  left=""
  for p in $pids; do gone "$p" || left="$left $p"; done
  if [ -z "$left" ]; then ok "$name: no process left (${pids:-none registered})"
  else not_ok "$name: no process left" "alive: $left"; for p in $left; do kill -KILL "$p" 2>/dev/null; done; fi

  # 3. SIGKILL: no report; `kmsrun cleanup` removes what is left; a second one is a no-op.
  if [ "$signame" = KILL ] && [ -n "$sig" ]; then
    dirs=$(grep -ao '"kind":"dir","path":"[^"]*"' "$out/ledger.ndjson" | sed 's/.*"path":"//; s/"$//' | tr '\n' ' ')
    [ ! -e "$out/report.json" ] && ok "$name: no report after SIGKILL" || not_ok "$name: no report after SIGKILL"
    if [ -n "$cleanup" ]; then
      "$KMSRUN" cleanup "$out" >"$log.cleanup" 2>&1; c=$?
      [ "$c" -eq 0 ] && ok "$name: kmsrun cleanup exit 0" || not_ok "$name: kmsrun cleanup exit 0" "exit $c" "$(cat "$log.cleanup")"
      left=""
      for d in $dirs; do [ -e "$d" ] && left="$left $d"; done
      [ -n "$dirs" ] && [ -z "$left" ] && ok "$name: work directories removed by cleanup" || not_ok "$name: work dirs removed" "dirs: $dirs left: $left"
      "$KMSRUN" cleanup "$out" >"$log.cleanup2" 2>&1; c=$?
      [ "$c" -eq 0 ] && grep -q "nothing to undo" "$log.cleanup2" && ok "$name: second cleanup is a no-op" \
        || not_ok "$name: second cleanup is a no-op" "$(cat "$log.cleanup2")"
    fi
    mode=streams
  else
    if [ -s "$out/report.json" ] && [ -s "$out/evidence.tar.gz" ]; then ok "$name: report.json and evidence.tar.gz written"
    else not_ok "$name: report.json and evidence.tar.gz written" "$(ls "$out" 2>&1)"; fi
    mode=full
  fi

  # 4. Streams parse, report agrees, every cleanup ran, no secret in the output.
  if res=$($PY "$WORK/check_out.py" "$out" "$want" "$leak" "$mode" 2>&1); then ok "$name: evidence consistent, no leaked key ($res)"
  else not_ok "$name: evidence consistent, no leaked key" "$res"; fi
done <<<"$ROWS"

# Negative control for the leak check: a planted key is found.
mkdir -p "$WORK/control"
echo 'io.stdout:write(require("kmsrun.crypto").keygen())' >"$WORK/keygen.lua"
"$KMSRUN" script "$WORK/keygen.lua" >"$WORK/control/planted.pem"
cp "$WORK/control/planted.pem" "$WORK/control-leak"
if $PY "$WORK/check_out.py" "$WORK/control" 0 "$WORK/control-leak" streams >/dev/null 2>&1; then
  not_ok "the leak check finds a planted key (negative control)"
else ok "the leak check finds a planted key (negative control)"; fi

# Lua-level tests of the same fault surface: redaction of every encoding of a
# key, and hostile responses through prpc, the redactor and the JSON encoder.
for t in "$F"/test_*.lua; do
  [ -n "${FAULTS_ONLY:-}" ] && break
  if "$KMSRUN" test "$t" >"$WORK/luatest.log" 2>&1; then ok "$(basename "$t"): $(tail -1 "$WORK/luatest.log")"
  else not_ok "$(basename "$t")" "$(tail -30 "$WORK/luatest.log")"; fi
done

sed 's/^/# /' "$WORK/matrix.txt"
echo "# $rows_run of $n matrix rows run in $(( $(date +%s) - started )) s with $KMSRUN"
[ "$n" -ge 25 ] && ok "the matrix has $n rows" || not_ok "the matrix has at least 25 rows" "$n"
finish
