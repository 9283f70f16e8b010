-- `kmsrun replay OUTDIR --curl`: each recorded RPC as the curl command that
-- sends the same request, so one step can be reproduced by hand.
--
-- The transcript is input, not code: a case or step name, a URL or a body may hold
-- a newline, a quote or `$(...)` (a runbook's own names, or a tampered file). Every
-- recorded text in the script is either a shell word in single quotes or part of a
-- comment with every control character escaped (a newline cannot end the comment),
-- and a word that holds control characters is not written at all.
local json = require "kmsrun.lib.json"

local M = {}

--- Quotes a word for a POSIX shell (single quotes: nothing inside is special).
function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function has_control(s)
  return tostring(s):find("[%z\1-\31\127]") ~= nil
end

--- Text for a `#` comment: one line, control characters escaped, at most max bytes.
function M.comment_text(s, max)
  s = tostring(s):gsub("[%z\1-\31\127]", function(c)
    return ({ ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" })[c] or string.format("\\x%02x", c:byte())
  end)
  if max and #s > max then s = s:sub(1, max) .. "…" end
  return s
end

local function payload(entry)
  local r = entry.request
  if r == nil or r == json.null then return "{}" end
  if type(r) == "string" then return r end
  return json.encode(r)
end

--- The command line for one transcript entry. rewrite: list of {from, to} URL prefixes.
-- Returns nil, why when the entry cannot be written as a command.
function M.command(entry, rewrite)
  local url = tostring(entry.url or "")
  for _, rw in ipairs(rewrite or {}) do
    if url:sub(1, #rw[1]) == rw[1] then url = rw[2] .. url:sub(#rw[1] + 1) break end
  end
  -- A quoted newline is harmless to sh but not to a reader or a copy-paste into
  -- another shell; no recorded URL or JSON body kmsrun writes holds one.
  if has_control(url) then return nil, "the recorded URL holds control characters" end
  if not tostring(entry.method):match("^GET ") and has_control(payload(entry)) then
    return nil, "the recorded request body holds raw control characters"
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


--- The whole script for a list of transcript entries.
function M.script(rec, entries, opts)
  local judge = require "kmsrun.cli.replay.judge"
  local out = {
    "#!/bin/sh",
    "# The RPCs recorded in " .. M.comment_text(rec.path, 300) .. " (transcript.ndjson), as curl commands: run one to",
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
    out[#out + 1] = "# #" .. M.comment_text(e.seq, 20) .. " " .. (e.case and ("case: " .. M.comment_text(e.case, 200)) or "")
      .. " — " .. (e.step and ("step: " .. M.comment_text(e.step, 200)) or "")
    out[#out + 1] = "# recorded: " .. M.comment_text(judge.show(e), 200)
    if type(e.request) == "string" and e.request:find("[REDACTED", 1, true) or
       type(e.request) == "table" and json.encode(e.request):find("[REDACTED", 1, true) then
      out[#out + 1] = "# note: the request holds a value redacted as a secret; put the real value back before running"
    end
    local cmd, why = M.command(e, opts and opts.rewrite)
    out[#out + 1] = cmd or ("# not written as a command: " .. why .. " (a tampered transcript?)")
  end
  return table.concat(out, "\n") .. "\n"
end

return M
