local T = require "kmsrun.lib.testing"
local toml = require "kmsrun.lib.toml"

-- The kms.toml shape used by the upstream compose files (dstack/kms/dstack-app).
local KMS_TOML = [=[
# kms.toml as deployed upstream
[rpc]
address = "0.0.0.0"
port = 8000

[rpc.tls]
key = "/kms/certs/rpc.key"
certs = "/kms/certs/rpc.crt"

[rpc.tls.mutual]
ca_certs = "/kms/certs/tmp-ca.crt"
mandatory = false

[core]
cert_dir = "/kms/certs"
subject_postfix = ".dstack"
enforce_self_authorization = true   # trailing comment

[core.image]
verify = false
cache_dir = "/kms/images"

[core.auth_api]
type = "webhook"

[core.auth_api.webhook]
url = "http://10.0.2.2:3101"

[core.onboard]
enabled = true
auto_bootstrap_domain = ""
address = "0.0.0.0"
port = 8000
]=]

T.test("parses the upstream kms.toml shape", function()
  local t = assert(toml.parse(KMS_TOML))
  T.eq(t.rpc.port, 8000)
  T.eq(math.type(t.rpc.port), "integer")
  T.eq(t.rpc.tls.mutual.mandatory, false)
  T.eq(t.core.auth_api.webhook.url, "http://10.0.2.2:3101")
  T.eq(t.core.enforce_self_authorization, true)
  T.eq(t.core.onboard.auto_bootstrap_domain, "")
  T.eq(t.core.image.verify, false)
end)

T.test("dotted keys, quoted keys and inline tables", function()
  local t = assert(toml.parse([[
core.onboard.port = 9000
"quoted key" = 'literal \n kept'
a = { b = 1, c.d = "x" }
[x."y.z"]
w = true
]]))
  T.eq(t.core.onboard.port, 9000)
  T.eq(t["quoted key"], "literal \\n kept")
  T.eq(t.a.b, 1)
  T.eq(t.a.c.d, "x")
  T.eq(t.x["y.z"].w, true)
end)

T.test("strings: escapes, unicode, multi-line", function()
  local t = assert(toml.parse('s = "a\\tb\\"c\\u00e9"\nm = """\nline1\nline2"""\nl = \'\'\'\nraw \\n\'\'\'\n'))
  T.eq(t.s, 'a\tb"c\195\169')
  T.eq(t.m, "line1\nline2")
  T.eq(t.l, "raw \\n")
end)

T.test("numbers and arrays", function()
  local t = assert(toml.parse([=[
i = -42
u = 1_000
h = 0xff
f = 1.5
e = 2e3
arr = [
  1, 2, # comment
  3,
]
nested = [[1, 2], ["a"]]
empty = []
]=]))
  T.eq(t.i, -42)
  T.eq(t.u, 1000)
  T.eq(t.h, 255)
  T.eq(t.f, 1.5)
  T.eq(t.e, 2000.0)
  T.eq(t.arr, { 1, 2, 3 })
  T.eq(t.nested, { { 1, 2 }, { "a" } })
  T.eq(#t.empty, 0)
end)

T.test("arrays of tables", function()
  local t = assert(toml.parse("[[p]]\nn = 1\n[[p]]\nn = 2\n"))
  T.eq(t.p, { { n = 1 }, { n = 2 } })
end)

T.test("errors carry the line number", function()
  local cases = {
    { "a = 1\na = 2\n", "line 2: duplicate key 'a'" },
    { "a = \n", "line 1: expected a value" },
    { "[t]\n[t]\n", "line 2: table %[t%] defined twice" },
    { "a = \"open\n", "line 1: newline in a single%-line string" },
    { "a = 1 b\n", "line 1: unexpected 'b' after a value" },
    { "d = 1979-05-27\n", "dates and times are not supported" },
    { "a = [1 2]\n", "expected ',' or ']'" },
    { "a.b = 1\na.b.c = 2\n", "key 'a.b' is not a table" },
  }
  for _, c in ipairs(cases) do
    local t, err = toml.parse(c[1])
    T.eq(t, nil, c[1])
    T.match(err, c[2], c[1])
  end
end)

T.test("encode then parse gives the same table", function()
  local src = {
    rpc = { address = "0.0.0.0", port = 8000, tls = { key = "/k", certs = "/c", mutual = { ca_certs = "/t", mandatory = false } } },
    core = {
      cert_dir = "/kms/certs", site_name = "quote\"and\\back\nslash",
      auth_api = { type = "webhook", webhook = { url = "http://10.0.2.2:3101" } },
      onboard = { enabled = true, port = 8000 },
      ratio = 0.5, list = { "a", "b" },
    },
    ["odd key"] = 1,
  }
  local text = toml.encode(src)
  local back = assert(toml.parse(text))
  T.eq(back, src)
  T.contains(text, "[core.auth_api.webhook]\nurl = \"http://10.0.2.2:3101\"")
end)

T.test("encode is deterministic and writes empty arrays marked as arrays", function()
  local t = { b = 1, a = setmetatable({}, toml.array_mt) }
  T.eq(toml.encode(t), "a = []\nb = 1\n")
  T.eq(toml.encode(t), toml.encode(t))
end)

T.test("misuse raises", function()
  T.raises(function() toml.parse(5) end, "toml.parse: text must be a string")
  T.raises(function() toml.encode({ f = function() end }) end, "cannot encode a function")
end)
