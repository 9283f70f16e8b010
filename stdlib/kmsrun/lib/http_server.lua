-- kmsrun.lib.http_server: HTTP(S) servers whose handlers run as tasks.
-- kmsrun.httpd calls back straight from the loop, where nothing may wait; here
-- every request gets its own task, so a handler can sleep or make requests
-- (even to another server in the same process) without holding up the others.
local httpd = require "kmsrun.httpd"
local task = require "kmsrun.lib.task"

local M = {}
local Server = {}
Server.__index = Server

M.__doc = {
  summary = "HTTP/HTTPS servers whose handlers run in their own task",
  funcs = {
    {
      name = "listen",
      signature = "listen(handler, opts)",
      returns = "server | nil, err, code",
      doc = "Starts an HTTP/1.1 server on the event loop. Each request runs `handler(req)` in a task of its "
        .. "own, so the handler may wait (sleep, make HTTP requests, even to another server of this process) "
        .. "while other requests are served.\n\n"
        .. "The handler returns `status, body, headers` or one table `{status =, body =, headers =}`: status "
        .. "an integer 200..599, body a string (default `\"\"`), headers a table of name = string. "
        .. "Content-Length is always set. Alternatively it answers itself with `req:respond(status, body, "
        .. "headers)` and returns nothing. If the handler raises (or returns something unusable), the client "
        .. "gets 500 `internal server error` and the error is passed to `opts.on_error(err, req)`, or printed "
        .. "to stderr without it.\n\n"
        .. "`req` has `method`, `path` (without the query, not percent-decoded), `query` (raw, `\"\"` if none), "
        .. "`headers` (lowercase names), `body`, `peer_addr`, `peer_port`, `tls` (boolean) and `peer_cert` "
        .. "(the client certificate as PEM, or nil).\n\n"
        .. "Options: `host` (default `\"127.0.0.1\"`), `port` (default 0: any free port, read back "
        .. "`srv.port`), `max_body` (bytes, default 10 MiB; larger bodies get 413 without calling the "
        .. "handler), `on_error`, and `tls = {cert =, key =, client_ca =, require_client_cert =}` for HTTPS: "
        .. "`cert` is the leaf certificate PEM optionally followed by its chain, `key` its private key PEM. "
        .. "With `client_ca` (PEM) clients are asked for a certificate: one that does not chain to "
        .. "`client_ca` fails the handshake; none at all is accepted unless `require_client_cert = true`.\n\n"
        .. "The server has fields `host`, `port`, `tls`. It stays open until `srv:close()`, the end of a "
        .. "`<close>` variable, or process exit. Failures: `EADDRINUSE`, `EADDRNOTAVAIL`, `EACCES`, "
        .. "`EINVAL` (unusable certificate or key).",
    },
    {
      name = "server:url",
      signature = "srv:url([path])",
      returns = "string",
      doc = "The base URL of the server, e.g. `https://127.0.0.1:43121`, with `path` appended if given. "
        .. "A server listening on a wildcard address (`0.0.0.0`, `::`) gives the loopback address.",
    },
    {
      name = "server:close",
      signature = "srv:close()",
      returns = "nothing",
      doc = "Stops listening at once (the port can be listened on again right away) and drops open "
        .. "connections; handlers still running finish, but their responses are not sent. Idempotent.",
    },
  },
}

local function rename(msg)
  return (tostring(msg):gsub("^httpd%.listen:", "server.listen:"))
end

local function report(self, err, traceback, req)
  if self.on_error then
    local ok, e = pcall(self.on_error, err, req)
    if ok then return end
    io.stderr:write("kmsrun: server: on_error failed: ", tostring(e), "\n")
  end
  io.stderr:write("kmsrun: server: handler for ", req.method, " ", req.path, " failed: ",
    tostring(traceback or err), "\n")
end

local function serve(self, req)
  local traceback
  local function on_raise(e)
    traceback = debug.traceback(type(e) == "string" and e or nil, 2)
    return e
  end
  local results = table.pack(xpcall(self.handler, on_raise, req))
  local err
  if results[1] then
    if req.responded then return end
    local status, body, headers = results[2], results[3], results[4]
    if type(status) == "table" then status, body, headers = status.status, status.body, status.headers end
    if status == nil then
      err = "server: the handler returned no status (return status, body, headers or call req:respond)"
    else
      local ok, e = pcall(req.respond, req, status, body, headers)
      if ok then return end
      err = "server: the handler's response is unusable: " .. tostring(e):gsub("^httpd%.respond: ", "")
    end
  else
    err = results[2]
  end
  if not req.responded then
    req:respond(500, "internal server error", { ["Content-Type"] = "text/plain" })
  end
  -- Shutting down (Ctrl-C, a cancelled run) is not the handler's fault.
  if not task.is_cancelled(err) then report(self, err, traceback, req) end
end

--- Starts a server; see M.__doc.
function M.listen(handler, opts)
  if type(handler) ~= "function" then
    error("server.listen: handler must be a function, got " .. type(handler), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("server.listen: options must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
    error("server.listen: option 'on_error' must be a function, got " .. type(opts.on_error), 2)
  end
  local low = {}
  for k, v in pairs(opts) do
    if k ~= "on_error" then low[k] = v end
  end
  local self = setmetatable({ handler = handler, on_error = opts.on_error }, Server)
  local ok, srv, err, code = pcall(httpd.listen, low, function(req)
    task.spawn(serve, self, req)
  end)
  if not ok then error(rename(srv), 2) end
  if not srv then return nil, rename(err), code end
  self._httpd, self.host, self.port, self.tls = srv, srv.host, srv.port, srv.tls
  return self
end

function Server:url(path)
  local host = self.host
  if host == "0.0.0.0" then host = "127.0.0.1" elseif host == "::" then host = "::1" end
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return string.format("%s://%s:%d%s", self.tls and "https" or "http", host, self.port, path or "")
end

function Server:close()
  self._httpd:close()
end

Server.__close = Server.close

function Server:__tostring()
  return string.format("server %s (%s)", self:url(), self._httpd.closed and "closed" or "listening")
end

return M
