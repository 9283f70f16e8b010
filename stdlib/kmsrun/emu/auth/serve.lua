-- `kmsrun serve auth`: the auth server as a standalone process, a drop-in for
-- auth-simple (same environment variables, same policy file, same answers).
local auth = require "kmsrun.emu.auth.server"
local argv = require "kmsrun.lib.argv"

local USAGE = [[usage: kmsrun serve auth [--config FILE] [--port N] [--host H] [--log FILE]
  --config FILE  policy file, re-read on every request (env AUTH_CONFIG_PATH, default ./auth-config.json)
  --port N       port, 0 picks a free one (env PORT, default 3000)
  --host H       address to listen on (default 127.0.0.1)
  --log FILE     append every decision to FILE as one JSON line
  --mutation N   TEST ONLY: re-create an auth server bug, comma separated (the auth
                 switches of emu/mutations.lua, docs/emulator.md)
Prints "listening on http://HOST:PORT" once ready; stops on SIGTERM or SIGINT.
]]

local FLAGS = {
  ["--config"] = { "config", value = "FILE" }, ["--port"] = { "port", value = "N" }, ["--host"] = { "host", value = "H" },
  ["--log"] = { "log", value = "FILE" }, ["--mutation"] = { "mutation", value = "N" },
  ["--help"] = { "help" }, ["-h"] = "--help",
}

local function port_number(s, from)
  local n = math.tointeger(tonumber(s))
  if not n or n < 0 or n > 65535 or not s:match("^%d+$") then
    return nil, string.format("%s must be a port number (0-65535), got '%s'", from, s)
  end
  return n
end

local function fail(msg)
  io.stderr:write("kmsrun serve auth: ", msg, "\n", USAGE)
  return 2
end

local function describe(e)
  local who = e.path == "/bootAuth/kms" and "KMS" or "app"
  local id = e.path == "/bootAuth/kms" and e.mrAggregated or e.appId
  return string.format("%s boot auth %s: %s%s%s\n", who, tostring(id or "?"), e.decision,
    e.reason ~= "" and " (" or "", e.reason ~= "" and (e.reason .. ")") or "")
end

return function(args)
  local o, err = argv.parse(args, FLAGS)
  if not o then return fail(err) end
  if o.help then io.stdout:write(USAGE); return 0 end
  local port_text, port_from = o.port, "--port"
  if not port_text then
    local env_port = os.getenv("PORT")
    port_text, port_from = (env_port and env_port ~= "") and env_port or "3000", "PORT"
  end
  local port, perr = port_number(port_text, port_from)
  if not port then return fail(perr) end
  local env_path = os.getenv("AUTH_CONFIG_PATH")
  local config_path = o.config or ((env_path and env_path ~= "") and env_path or "./auth-config.json")

  if o.mutation then
    local ok, merr = require("kmsrun.emu.mutations").set(o.mutation, "auth")
    if not ok then return fail(merr) end
  end
  local srv, serr = auth.start({
    config_path = config_path, port = port, host = o.host or "127.0.0.1", log_path = o.log,
    on_decision = function(e) io.stderr:write(describe(e)) end, mutations = o.mutation,
  })
  if not srv then
    io.stderr:write("kmsrun serve auth: cannot listen: ", tostring(serr), "\n")
    return 1
  end
  local host = srv.host:find(":", 1, true) and ("[" .. srv.host .. "]") or srv.host
  io.stdout:write(string.format("listening on http://%s:%d\n", host, srv.port))
  io.stdout:flush()

  require("kmsrun.lib.task").wait_for_signal("serve auth: until SIGTERM or SIGINT")
  srv:close()
  return 0
end
