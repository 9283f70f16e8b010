-- `kmsrun replay OUTDIR --curl`: each recorded RPC as the curl command that
-- sends the same request, so one step can be reproduced by hand.
local json = require "kmsrun.lib.json"

local M = {}

--- Quotes a word for a POSIX shell.
function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function payload(entry)
  local r = entry.request
  if r == nil or r == json.null then return "{}" end
  if type(r) == "string" then return r end
  return json.encode(r)
end

--- The command line for one transcript entry. rewrite: list of {from, to} URL prefixes.
function M.command(entry, rewrite)
  local url = tostring(entry.url or "")
  for _, rw in ipairs(rewrite or {}) do
    if url:sub(1, #rw[1]) == rw[1] then url = rw[2] .. url:sub(#rw[1] + 1) break end
  end
  local words = { "curl", "-sS" }
  if tostring(entry.method):match("^GET ") then
    -- A plain GET (GET /finish), as kmsrun sent it.
  else
    -- prpc in JSON mode: POST <base>/prpc/<Method>?json with a JSON body, as kmsrun sends it.
    words[#words + 1] = "-X POST"
  end
  words[#words + 1] = M.shell_quote(url)
  if not tostring(entry.method):match("^GET ") then
    words[#words + 1] = "-H " .. M.shell_quote("Content-Type: application/json")
    words[#words + 1] = "-d " .. M.shell_quote(payload(entry))
  end
  -- -k: the KMS's runtime endpoint presents its own RA-TLS certificate, issued by
  -- the KMS's CA, which no system trust store holds; kmsrun does not verify it
  -- either (the KMS is trusted through attestation, not the WebPKI).
  if url:match("^https:") then words[#words + 1] = "-k" end
  -- Never -f: every prpc failure is an HTTP 400 whose body {"error": "..."} is the
  -- very thing a deny case checks; -f would make curl drop that body.
  return table.concat(words, " ")
end

local function one_line(s, max)
  s = tostring(s):gsub("\n", "\\n")
  if #s > max then s = s:sub(1, max) .. "…" end
  return s
end

--- The whole script for a list of transcript entries.
function M.script(rec, entries, opts)
  local judge = require "kmsrun.cli.replay.judge"
  local out = {
    "#!/bin/sh",
    "# The RPCs recorded in " .. rec.path .. " (transcript.ndjson), as curl commands: run one to",
    "# reproduce a step by hand against a deployment that is still up (on the sim target the",
    "# instances stop with the run; use --rewrite OLD=NEW to point the URLs elsewhere).",
    "# -k: the KMS runtime endpoint presents the KMS's own RA-TLS certificate, which no system",
    "#     trust store holds; kmsrun does not verify it either (attestation is the trust anchor).",
    "# no -f: a prpc error is an HTTP 400 whose JSON body {\"error\": \"...\"} is the evidence; -f",
    "#     would make curl print nothing and exit 22.",
    "# Responses were recorded with private keys redacted; requests are as sent.",
  }
  for _, e in ipairs(entries) do
    out[#out + 1] = ""
    out[#out + 1] = string.format("# #%d %s — %s", e.seq, e.case and ("case: " .. e.case) or "", e.step and ("step: " .. e.step) or "")
    out[#out + 1] = "# recorded: " .. one_line(judge.show(e), 200)
    if type(e.request) == "string" and e.request:find("[REDACTED", 1, true) or
       type(e.request) == "table" and json.encode(e.request):find("[REDACTED", 1, true) then
      out[#out + 1] = "# note: the request holds a value redacted as a secret; put the real value back before running"
    end
    out[#out + 1] = M.command(e, opts and opts.rewrite)
  end
  return table.concat(out, "\n") .. "\n"
end

return M
