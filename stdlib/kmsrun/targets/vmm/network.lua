-- Who reaches whom on the vmm target. Three parties: kmsrun (the operator host,
-- where the auth servers run), the VMM host (where the port forwards listen) and
-- the CVMs. With QEMU user-mode networking a CVM sees the VMM host as 10.0.2.2
-- and reaches the host's loopback through it, so:
--   same host, user mode (default): auth servers on 127.0.0.1, advertised to the
--     CVMs as 10.0.2.2; forwards on 127.0.0.1.
--   remote VMM: 10.0.2.2 is the VMM host, not this one; the auth servers must
--     listen where the CVM can reach them (auth_bind=0.0.0.0) and be advertised
--     by an address of this host the CVM can route to (auth_advertise); the
--     forwards must listen where this host reaches them (vmm_forward_address).
--   bridge networking: the CVM has its own address on the bridge; 10.0.2.2 means
--     nothing; auth_advertise must be this host's address on the bridge and
--     guest_host the VMM host's (so other CVMs reach the forwards).
local M = {}

function M.is_loopback(host)
  return host == "localhost" or host == "::1" or (host or ""):match("^127%.") ~= nil
end

function M.url_host(host)
  return host:find(":", 1, true) and ("[" .. host .. "]") or host
end

--- Splits http://host:port/rest into scheme, host, rest (rest starts at ":port").
function M.split_url(url)
  local scheme, host, rest = url:match("^(https?://)%[([^%]]+)%](.*)$")
  if not scheme then scheme, host, rest = url:match("^(https?://)([^:/]+)(.*)$") end
  return scheme, host, rest
end

local function var(ctx, name)
  local v = ctx.vars[name]
  return (v ~= nil and v ~= "") and v or nil
end

--- The address the in-process auth servers listen on (auth_bind, default 127.0.0.1).
function M.auth_bind(ctx)
  return var(ctx, "auth_bind") or "127.0.0.1"
end

--- The auth server as a CVM reaches it: auth_advertise when given; else a
-- loopback or wildcard address becomes guest_host (10.0.2.2); any other
-- address is used as is.
function M.auth_url_for_kms(ctx, auth)
  local scheme, host, rest = M.split_url(auth.url)
  if not host then return auth.url end
  local advertise = var(ctx, "auth_advertise")
  if advertise then return scheme .. M.url_host(advertise) .. rest end
  if M.is_loopback(host) or host == "0.0.0.0" or host == "::" then
    return scheme .. M.url_host(var(ctx, "guest_host") or "10.0.2.2") .. rest
  end
  return auth.url
end

--- Checks, before any VM is created, that the CVMs can reach the auth servers
-- and kmsrun can reach the forwards. remote: the VMM is not on this host (its
-- URL host is not loopback); networking: the VMM's default mode when it says
-- ("user", "bridge"). Returns true or nil, err.
function M.check(ctx, remote, auths, networking)
  local bind, advertise = M.auth_bind(ctx), var(ctx, "auth_advertise")
  local forward = var(ctx, "vmm_forward_address") or "127.0.0.1"
  local in_process = false
  for _, a in ipairs(auths or {}) do if not a.external then in_process = true end end
  if advertise and M.is_loopback(advertise) then
    return nil, string.format("auth_advertise=%s is a loopback address: inside a CVM it is the CVM itself; "
      .. "give an address of this host the CVM can reach (10.0.2.2 when the VMM runs here with user-mode networking)", advertise)
  end
  if in_process and advertise and M.is_loopback(bind) and advertise ~= (var(ctx, "guest_host") or "10.0.2.2") then
    return nil, string.format("the auth servers listen on %s (auth_bind) but are advertised to the CVMs as %s: "
      .. "only 10.0.2.2 (user-mode networking on this host) reaches a loopback address; set auth_bind=0.0.0.0 "
      .. "or auth_bind=%s", bind, advertise, advertise)
  end
  if networking == "bridge" and in_process and not advertise then
    return nil, "the VMM's CVMs use bridge networking (GetMeta): 10.0.2.2 means nothing there; set "
      .. "auth_bind=0.0.0.0 and auth_advertise=<this host's address on the bridge>, and guest_host=<the VMM "
      .. "host's address on the bridge> (see docs/targets/vmm.md, network topologies)"
  end
  if remote and in_process and not advertise then
    return nil, "the VMM is not on this host (its URL is not loopback), so 10.0.2.2 inside a CVM is the VMM host, "
      .. "not the one running the auth servers: set auth_bind=0.0.0.0 (or this host's address) and "
      .. "auth_advertise=<this host's address as the CVM reaches it>; if the VMM does run here, "
      .. "set auth_advertise=10.0.2.2 (see docs/targets/vmm.md, network topologies)"
  end
  if remote and M.is_loopback(forward) and not var(ctx, "vmm_host") then
    return nil, string.format("the port forwards listen on %s of the VMM host (vmm_forward_address), which this "
      .. "host cannot reach: tunnel them (ssh -L) and set vmm_host=127.0.0.1, or set vmm_forward_address to an "
      .. "address reachable from here (an onboard KMS is unauthenticated: only on a trusted network)", forward)
  end
  return true
end

return M
