#!/bin/bash
# The examples in docs/ run, so they cannot rot (the conventions are in
# docs/writing-runbooks.md, "Examples in these docs are tested"):
# - every ```lua block in docs/**/*.md compiles;
# - a ```lua block whose first line is `-- runbook: NAME.lua` is a complete runbook:
#   extracted to runbooks/NAME.lua and run on sim, it must exit 0;
# - a ```lua block whose first line is `-- module: PATH.lua` is a runbook's helper
#   module, extracted to runbooks/PATH.lua (next to the runbooks that require it);
# - `<!-- docs-test: exit N: ARGS -->` runs `kmsrun ARGS` and expects exit N; the
#   ```text block that follows, if any, must appear in the output (normalised);
# - the `example` of every DSL definition (api.define, shown by `kmsrun doc`) compiles.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
PY=/usr/bin/python3
mkdir -p "$WORK/rb/runbooks" "$WORK/lua"

# Extract: runbooks to rb/runbooks/NAME.lua, every lua block to lua/<doc>-<n>.lua,
# docs-test commands to tests.tsv (doc, line, exit, args, expected-text file).
$PY - "$SRC/docs" "$WORK" <<'PYEOF' >"$WORK/extract.out" 2>&1
import os, re, sys
docs, work = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(docs) for f in fs if f.endswith(".md"))
names = {}
tests = []
for path in files:
    rel = os.path.relpath(path, docs)
    lines = open(path, encoding="utf-8").read().split("\n")
    i, nblock = 0, 0
    pending = None  # a docs-test waiting for its ```text block
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^<!-- docs-test: exit (\d+): (.*?) -->\s*$", line)
        if m:
            if pending: tests.append(pending)
            pending = {"doc": rel, "line": i + 1, "exit": int(m.group(1)), "args": m.group(2), "text": None}
            i += 1; continue
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence:
            lang = fence.group(1)
            j = i + 1
            while j < len(lines) and not re.match(r"^```\s*$", lines[j]): j += 1
            body = lines[i + 1:j]
            if lang == "lua":
                nblock += 1
                slug = re.sub(r"[^A-Za-z0-9]+", "_", rel)
                open(os.path.join(work, "lua", f"{slug}-{nblock:02d}.lua"), "w").write("\n".join(body) + "\n")
                mm = re.match(r"^-- runbook: ([\w.-]+\.lua)\s*$", body[0]) if body else None
                mod = re.match(r"^-- module: ([\w./-]+\.lua)\s*$", body[0]) if body else None
                if mod:
                    # A runbook's helper module: written where the runbooks are, at its path.
                    mpath = os.path.join(work, "rb", "runbooks", mod.group(1))
                    os.makedirs(os.path.dirname(mpath), exist_ok=True)
                    open(mpath, "w").write("\n".join(body) + "\n")
                if mm:
                    name = mm.group(1)
                    if name in names:
                        sys.exit(f"{rel}:{i + 1}: runbook {name} already defined in {names[name]}")
                    names[name] = f"{rel}:{i + 1}"
                    open(os.path.join(work, "rb", "runbooks", name), "w").write("\n".join(body) + "\n")
            elif lang == "text" and pending and pending["text"] is None:
                tf = os.path.join(work, f"expected-{len(tests) + 1}.txt")
                open(tf, "w").write("\n".join(body) + "\n")
                pending["text"] = tf
                tests.append(pending); pending = None
            i = j + 1; continue
        if line.startswith("#") and pending:  # a new section: the test has no text block
            tests.append(pending); pending = None
        i += 1
    if pending: tests.append(pending)
with open(os.path.join(work, "runbooks.tsv"), "w") as f:
    for name, where in sorted(names.items()): f.write(f"{name}\t{where}\n")
with open(os.path.join(work, "tests.tsv"), "w") as f:
    for t in tests: f.write(f"{t['doc']}:{t['line']}\t{t['exit']}\t{t['args']}\t{t['text'] or ''}\n")
print(len(names), "runbooks,", len(tests), "docs-tests")
PYEOF
if [ $? -eq 0 ]; then ok "docs extracted: $(cat "$WORK/extract.out")"; else not_ok "extracting the docs' examples" "$(cat "$WORK/extract.out")"; fi

# 1. Every lua block compiles, and so does every DSL definition's example.
# Blocks that are not meant as Lua code (pseudo-code summaries), by doc and position.
# emulator.md's "In-process" block lists fields and return values, it is not a chunk;
# it should become a ```text block, then this line can go.
NOT_LUA="emulator_md-01.lua"
for f in $NOT_LUA; do
  if [ -f "$WORK/lua/$f" ]; then mv "$WORK/lua/$f" "$WORK/$f.skipped"; else not_ok "$f is still listed as not Lua but is gone: update NOT_LUA"; fi
done
cat >"$WORK/compile.lua" <<'EOF'
local bad = 0
local function check(name, text)
  local f, err = load(text, "=" .. name, "t")
  if not f then bad = bad + 1; print("not ok - " .. name .. " compiles: " .. err) end
end
for _, file in ipairs(arg) do
  local h = assert(io.open(file)); check(file:match("[^/]+$"), h:read("a")); h:close()
end
local api = require "kmsrun.dsl.api"
require("kmsrun.dsl.declare").new()
require "kmsrun.dsl.actions"
require "kmsrun.dsl.expect"
local n = 0
for _, name in ipairs(api.order) do
  local rec = api.functions[name]
  if rec.example then n = n + 1; check("example of " .. name, rec.example) end
end
print(string.format("%d doc blocks, %d definition examples, %d do not compile", #arg, n, bad))
return bad == 0 and 0 or 1
EOF
"$KMSRUN" script "$WORK/compile.lua" "$WORK"/lua/*.lua >"$WORK/compile.out" 2>&1
if [ $? -eq 0 ]; then ok "every lua block in docs/ and every definition's example compiles ($(tail -1 "$WORK/compile.out"))"
else not_ok "lua blocks compile" "$(cat "$WORK/compile.out")"; fi

# 2. Every complete runbook runs on sim and exits 0.
while IFS=$'\t' read -r name where; do
  (cd "$WORK/rb" && "$KMSRUN" -q --out "$WORK/runs/$name" "runbooks/$name") >"$WORK/out" 2>&1
  code=$?
  if [ $code -eq 0 ]; then ok "$where: runbooks/$name passes on sim"
  else not_ok "$where: runbooks/$name passes on sim" "exit $code" "$(tail -n 25 "$WORK/out")"; fi
done <"$WORK/runbooks.tsv"
[ -s "$WORK/runbooks.tsv" ] || not_ok "the docs hold at least one complete runbook"

# 3. The docs-test commands and their expected output.
# matches EXPECTED ACTUAL: every expected line, normalised, appears in the actual
# output, in order; a line ending in "…" matches as a prefix.
matches() {
  $PY - "$1" "$2" <<'PYEOF'
import re, sys
def norm(s):
    s = s.rstrip()
    s = re.sub(r"\(\d+ ms\)", "(N ms)", s)
    s = re.sub(r"\(\d+(\.\d+)? s\)", "(N s)", s)
    s = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", s)
    s = re.sub(r"[0-9a-f]{16,}", "HEX", s)
    s = re.sub(r"kmsrun \d+\.\d+\.\d+", "kmsrun VERSION", s)
    s = re.sub(r"(?<![\w.:/~-])/[\w.~/-]+", "PATH", s)
    s = re.sub(r"\b\d+ files match", "N files match", s)
    return s
want = [norm(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
have = [norm(l) for l in open(sys.argv[2], encoding="utf-8", errors="replace")]
k = 0
for w in want:
    prefix = w.endswith("…")
    w2 = w[:-1] if prefix else w
    while k < len(have) and not (have[k].startswith(w2) if prefix else have[k] == w2):
        k += 1
    if k == len(have):
        print("missing (or out of order):", w); sys.exit(1)
    k += 1
PYEOF
}
# The matcher can fail (negative control): a changed count, a missing line.
printf 'cases: 1 passed, 0 failed, 0 skipped\n' >"$WORK/fake-out"
printf 'cases: 2 passed, 0 failed, 0 skipped\n' >"$WORK/fake-want"
printf '  [ok  ] deploy kms-a (17 ms)\n  PASSED (0.09 s)\n' >"$WORK/fake-out2"
printf '  PASSED (1.5 s)\n  [ok  ] deploy kms-a (3 ms)\n' >"$WORK/fake-want2"
if ! matches "$WORK/fake-want" "$WORK/fake-out" >/dev/null && ! matches "$WORK/fake-want2" "$WORK/fake-out2" >/dev/null \
   && matches "$WORK/fake-out2" "$WORK/fake-out2" >/dev/null; then ok "the output matcher rejects a changed line and a wrong order"
else not_ok "the output matcher rejects a changed line and a wrong order"; fi
n=0
runs=()
while IFS=$'\t' read -r where want args text; do
  n=$((n + 1))
  # OUTDIR: a fresh directory for a run, the last run's for replay; OUTDIRk: the k-th run's.
  set -- $args
  if [ "$1" = replay ]; then
    for ((k = ${#runs[@]}; k >= 1; k--)); do args=${args//OUTDIR$k/${runs[$((k - 1))]}}; done
    args=${args//OUTDIR/${runs[${#runs[@]}-1]:-none}}
  elif [[ "$args" == *OUTDIR* ]]; then
    runs+=("$WORK/docs-out-$n")
    args=${args//OUTDIR/$WORK/docs-out-$n}
  fi
  (cd "$WORK/rb" && eval "\"\$KMSRUN\" $args") >"$WORK/out" 2>&1
  code=$?
  if [ "$code" != "$want" ]; then not_ok "$where: kmsrun $args exits $want" "exit $code" "$(tail -n 25 "$WORK/out")"; continue; fi
  if [ -z "$text" ]; then ok "$where: kmsrun ${args//$WORK/\$WORK} exits $want"; continue; fi
  if m=$(matches "$text" "$WORK/out"); then ok "$where: kmsrun ${args//$WORK/\$WORK} exits $want and prints what the doc shows"
  else not_ok "$where: output of kmsrun $args" "$m" "$(tail -n 30 "$WORK/out")"; fi
done <"$WORK/tests.tsv"

finish
