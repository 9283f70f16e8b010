-- Declarations, evaluated when the runbook is loaded (no side effects, so
-- `kmsrun check` and `kmsrun plan` can load a runbook safely): the header,
-- the topology (auth servers, KMS instances) and the named cases.
local api = require "kmsrun.dsl.api"

local M = {}

-- Option values of the wrong type are usage errors at the runbook's line, not a
-- crash deep in the stdlib later (found by tests/fuzz/fuzz_runbook).
local function want(fn, field, v, kind)
  local ok
  if v == nil then return end
  if kind == "list of strings" then
    ok = type(v) == "table"
    if ok then for _, x in pairs(v) do if type(x) ~= "string" then ok = false end end end
  elseif kind == "positive number" then
    ok = type(v) == "number" and v > 0
  else
    ok = type(v) == kind
  end
  if not ok then
    api.usage_error(string.format("%s: %s must be a %s, got %s", fn, field, kind,
      type(v) == "string" and string.format("%q", v) or type(v)))
  end
end

--- A fresh declaration collector for one runbook.
function M.new()
  local spec = { header = nil, auths = {}, kmss = {}, cases = {}, setup = nil, teardown = nil, names = {} }

  local function unique_name(kind, name)
    if type(name) ~= "string" or not name:match("^[%w][%w%-_.]*$") then
      api.usage_error(string.format("%s: name must be letters, digits, '-', '_' or '.', got %q", kind, tostring(name)))
    end
    if spec.names[name] then api.usage_error(string.format("%s: the name %q is already used", kind, name)) end
    spec.names[name] = true
  end

  local d = {}

  d.runbook = api.define {
    name = "runbook", group = "declare",
    signature = "runbook{description, tags, vars, requires, host_access}", returns = "nothing",
    args = { { "header", "table", options = { description = true, tags = true, vars = true, requires = true, name = true,
      host_access = true } } },
    doc = [[Declares the runbook header (once, at the top): `description` (one paragraph), `tags` (list of strings, for `--tag`), `vars` (name -> `{default = ..., help = "...", required = bool}`; read them as `var.name`, set them with `--var name=value`), `requires` (`{targets = {"sim", "local", "vmm"}}`), `host_access` (`true`: the runbook may use what reaches the host outside the run, such as `os.execute`, `io` or any module; see "The runbook environment"). `kmsrun RUNBOOK --help` shows it.]],
    example = [[runbook {
  description = "Bootstrap, then onboard a second KMS from the first",
  tags = { "kms", "onboard" },
  vars = { src_domain = { default = "kms-src.example.test", help = "domain for kms-src" } },
}]],
    fn = function(h)
      if spec.header then api.usage_error("runbook: declared twice") end
      want("runbook", "description", h.description, "string")
      want("runbook", "name", h.name, "string")
      want("runbook", "tags", h.tags, "list of strings")
      want("runbook", "vars", h.vars, "table")
      want("runbook", "requires", h.requires, "table")
      if h.requires then want("runbook", "requires.targets", h.requires.targets, "list of strings") end
      if h.host_access ~= nil and type(h.host_access) ~= "boolean" then
        api.usage_error("runbook: host_access must be true or false, got " .. type(h.host_access))
      end
      for name, v in pairs(h.vars or {}) do
        if type(v) ~= "table" then api.usage_error("runbook: vars." .. name .. " must be a table {default=, help=}") end
        for k in pairs(v) do
          if not ({ default = 1, help = 1, required = 1, secret = 1 })[k] then
            api.usage_error(string.format("runbook: vars.%s: unknown field '%s'", name, tostring(k)))
          end
        end
      end
      spec.header = h
    end,
  }

  d.auth_server = api.define {
    name = "auth_server", group = "declare",
    signature = "auth_server(name, [opts])", returns = "auth",
    args = { { "name", "string" }, { "opts", "table?", options = { policy = true, url = true, config_path = true } } },
    doc = [[Declares an auth-policy server (auth-simple compatible webhook). By default kmsrun runs it in-process on loopback, starting with the deny-all baseline (`opts.policy` to start otherwise). To use an existing auth-simple instead, give `opts.url` (its base URL) and `opts.config_path` (the policy file it hot-reloads; `set_policy` replaces it atomically and restores the original at cleanup). The handle's `url` is the operator's view.]],
    example = [[local auth_src = auth_server("auth-src")]],
    fn = function(name, opts)
      unique_name("auth_server", name)
      if opts then
        want("auth_server", "opts.url", opts.url, "string")
        want("auth_server", "opts.config_path", opts.config_path, "string")
        want("auth_server", "opts.policy", opts.policy, "table")
      end
      local h = { __kind = "auth", name = name, spec = opts or {}, declared_at = api.runbook_location() }
      spec.auths[#spec.auths + 1] = h
      return h
    end,
  }

  d.kms = api.define {
    name = "kms", group = "declare",
    signature = "kms(name, opts)", returns = "kms",
    args = { { "name", "string" }, { "opts", "table", options = { auth = true, attestation = true, image = true,
      device = true, tcb_status = true, advisories = true, old_format_cert = true, verify_images = true } } },
    doc = [[Declares a KMS instance (deployed later by `deploy`). `opts.auth` (required): the auth server its webhook points at. `opts.attestation = false` deploys it without any attestation source (no guest agent / simulator), to show there is no no-quote mode. `opts.image`: target-specific image name (on sim the OS image the instance reports: another name, another `os_image_hash`). Emulator knobs (sim only): `opts.device` (a device label: instances with different labels run on different machines, so different `device_id`; by default all share one), `opts.tcb_status` (the TCB status the attestation reports, default `UpToDate`), `opts.advisories` (list of advisory ids it reports), `opts.old_format_cert = true` (its RPC certificate carries an attestation without vm_config, as an older KMS's does: a receiver onboarding from it sees an empty `osImageHash` and fills in its own), `opts.verify_images` (list of OS image names: turns on the KMS's OS image verification, `core.image.verify`, against an image server that has exactly these images; a caller with another image gets `Failed to verify os image hash`). The handle gets, once deployed: `onboard_url`, `runtime_url` (operator view), `guest.onboard_url`, `guest.runtime_url` (as seen from inside another CVM), `mode` (`onboard` or `runtime`), `attestation` (after `capture_attestation`).]],
    example = [[local src = kms("kms-src", { auth = auth_src })]],
    fn = function(name, opts)
      unique_name("kms", name)
      if type(opts.auth) ~= "table" or opts.auth.__kind ~= "auth" then
        api.usage_error("kms: opts.auth must be an auth_server handle")
      end
      want("kms", "opts.attestation", opts.attestation, "boolean")
      want("kms", "opts.image", opts.image, "string")
      want("kms", "opts.device", opts.device, "string")
      want("kms", "opts.tcb_status", opts.tcb_status, "string")
      want("kms", "opts.advisories", opts.advisories, "list of strings")
      want("kms", "opts.old_format_cert", opts.old_format_cert, "boolean")
      want("kms", "opts.verify_images", opts.verify_images, "list of strings")
      local h = { __kind = "kms", name = name, spec = opts, auth = opts.auth, mode = "onboard", deployed = false,
        declared_at = api.runbook_location() }
      spec.kmss[#spec.kmss + 1] = h
      return h
    end,
  }

  d.setup = api.define {
    name = "setup", group = "declare",
    signature = "setup([name], fn)", returns = "nothing",
    args = { { "name_or_fn", "string|function" } },
    doc = [[Declares what runs before the cases (typically `deploy`, `wait_ready`, `capture_attestation`). A failure here fails the run before any case.]],
    example = [[setup("deploy", function()
  deploy(src, dst)
  wait_ready(src, dst)
  capture_attestation(src, dst)
end)]],
    fn = function(a, b)
      if spec.setup then api.usage_error("setup: declared twice") end
      local fn = b or a
      if type(fn) ~= "function" then api.usage_error("setup: fn must be a function") end
      spec.setup = { name = type(a) == "string" and a or "setup", fn = fn, steps = {}, location = api.runbook_location() }
    end,
  }

  d.case = api.define {
    name = "case", group = "declare",
    signature = "case(name, [opts], fn)", returns = "nothing",
    args = { { "name", "string" } },
    doc = [[Declares a named case: a function of steps. Cases run in order; by default the run stops at the first failing case (the rest are `skipped`), `--keep-going` continues. `opts.needs` lists cases (by name) this one builds on: selecting it with `--case` also runs those. `opts.tags` for `--tag`. `opts.timeout`: the case's deadline in seconds (default: the target's, 600 on sim); when it passes, what the case waits for is cancelled and the case ends as `timeout`, naming what it was waiting for. `opts.targets` (list of target names): the case runs only there and is `skipped` elsewhere, saying why (for a case needing what only some targets offer, e.g. attested callers on sim).]],
    example = [[case("bootstrap is denied when self is not allowed", function()
  set_policy(auth_src, deny_by_mr(src))
  expect_error(rpc(src, "Onboard.Bootstrap", { domain = var.src_domain }), "KMS is not allowed to bootstrap: ")
end)]],
    fn = function(name, a, b)
      local opts, fn = a, b
      if type(a) == "function" then opts, fn = {}, a end
      if type(fn) ~= "function" then api.usage_error("case: fn must be a function") end
      if type(opts) ~= "table" then api.usage_error("case: opts must be a table") end
      for k in pairs(opts) do
        if not ({ needs = 1, tags = 1, timeout = 1, targets = 1 })[k] then api.usage_error("case: unknown option '" .. tostring(k) .. "'") end
      end
      want("case", "opts.needs", opts.needs, "list of strings")
      want("case", "opts.tags", opts.tags, "list of strings")
      want("case", "opts.timeout", opts.timeout, "positive number")
      want("case", "opts.targets", opts.targets, "list of strings")
      for _, c in ipairs(spec.cases) do
        if c.name == name then api.usage_error(string.format("case: a case named %q already exists", name)) end
      end
      spec.cases[#spec.cases + 1] = { id = #spec.cases + 1, name = name, fn = fn, needs = opts.needs or {},
        tags = opts.tags or {}, timeout = opts.timeout, targets = opts.targets, location = api.runbook_location() }
    end,
  }

  d.teardown = api.define {
    name = "teardown", group = "declare",
    signature = "teardown(fn)", returns = "nothing",
    args = { { "fn", "function" } },
    doc = [[Declares what runs after the cases, whatever their outcome (also after Ctrl-C), before the registered cleanups (which stop servers and remove instances on their own).]],
    example = [[teardown(function() archive() end)]],
    fn = function(fn)
      spec.teardown = { name = "teardown", fn = fn, steps = {} }
    end,
  }

  return d, spec
end

return M
