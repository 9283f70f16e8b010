-- An N-replica KMS cluster, its size a variable: the topology is built while the
-- runbook loads, from var.replicas (readable from the runbook{} header on).
runbook {
  description = "An N-replica KMS cluster (--var replicas=N): kms-1 bootstraps, kms-2 .. kms-N onboard from it "
    .. "concurrently, and every replica serves kms-1's k256 key. One auth server for the whole cluster, allowing "
    .. "every member: this runbook is about scale, not about denials (self_auth.lua and bootstrap_onboard.lua are).",
  tags = { "kms", "onboard", "scale" },
  vars = {
    replicas = { default = "3", help = "number of KMS instances in the cluster (an integer >= 2)" },
    domain = { default = "kms-cluster.example.test", help = "domain given to Bootstrap and Onboard" },
  },
  requires = { targets = { "sim", "local", "vmm" } },
}

local n = math.tointeger(tonumber(var.replicas))
if not n or n < 2 then error("var.replicas must be an integer >= 2, got '" .. tostring(var.replicas) .. "'", 0) end

-- Every KMS asks this one webhook about itself (self-checks), about its source
-- (receiver-side check) and about the callers of GetKmsKey (kms-1, for each replica).
local auth = auth_server("auth-cluster")
local nodes = {}
for i = 1, n do nodes[i] = kms("kms-" .. i, { auth = auth }) end
local first = nodes[1]
local replicas = { table.unpack(nodes, 2) }

setup("deploy the cluster, wait for it, capture attestation", function()
  deploy(table.unpack(nodes))
  wait_ready(table.unpack(nodes))
  capture_attestation(table.unpack(nodes))
end)

case("kms-1 bootstraps", function()
  set_policy(auth, allow(table.unpack(nodes)))
  expect_ok(rpc(first, "Onboard.Bootstrap", { domain = var.domain }), { "ca_pubkey", "k256_pubkey" })
  finish(first)
  wait_ready(first)
end)

case("every replica onboards from kms-1 concurrently and serves its k256 key", { needs = { "kms-1 bootstraps" } }, function()
  local key = expect_ok(rpc(first, "KMS.GetMeta"), { "k256_pubkey" }).k256_pubkey
  local branches = {}
  for i, r in ipairs(replicas) do
    branches[i] = function()
      expect_ok(rpc(r, "Onboard.Onboard", { source_url = source_url(first), domain = var.domain }), { "k256_pubkey" })
      finish(r)
      wait_ready(r)
      return rpc(r, "KMS.GetMeta").body.k256_pubkey
    end
  end
  local served = { parallel(table.unpack(branches)) }
  for i, r in ipairs(replicas) do expect_eq(served[i], key, r.name .. " serves kms-1's k256 key") end
end)
