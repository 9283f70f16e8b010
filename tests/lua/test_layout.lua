-- The stdlib's folders and the direction of their dependencies
-- (docs/architecture.md, "The stdlib"): a module may name a module of its own
-- folder or of a lower layer; dsl and run are one layer; the emulators see only
-- lib and kms. Every "kmsrun.X" string naming a stdlib file counts, so a module
-- loaded through a table of names is held to the rule like a plain require.
local T = require "kmsrun.lib.testing"
local fs = require "kmsrun.fs"

local ROOT = assert(os.getenv("KMSRUN_SOURCE_DIR"), "KMSRUN_SOURCE_DIR is not set") .. "/stdlib/kmsrun"

local LAYER = { lib = 0, kms = 1, report = 1, emu = 2, targets = 3, dsl = 4, run = 4, cli = 5 }
local SAME_LAYER_PEERS = { dsl = { run = true }, run = { dsl = true } }
local ONLY = { emu = { lib = true, kms = true } }

-- Every stdlib module: name ("kmsrun.lib.json") -> relative path ("lib/json.lua").
local function modules()
  local found = {}
  local function walk(dir, prefix)
    for _, name in ipairs(assert(fs.list(dir))) do
      local path = dir .. "/" .. name
      local _, kind = fs.exists(path)
      if kind == "directory" then
        walk(path, prefix .. name .. "/")
      elseif name:match("%.lua$") then
        local rel = prefix .. name
        found["kmsrun." .. rel:gsub("%.lua$", ""):gsub("/", ".")] = rel
      end
    end
  end
  walk(ROOT, "")
  return found
end

local function folder_of(rel) return rel:match("^([^/]+)/") end

--- The broken rules in a graph { [module] = { rel = path, names = {module, ...} } },
-- as readable lines.
local function violations(graph)
  local out = {}
  for mod, node in pairs(graph) do
    local from = folder_of(node.rel)
    if not from or LAYER[from] == nil then
      out[#out + 1] = node.rel .. ": not in one of the stdlib's folders"
    else
      for _, dep in ipairs(node.names) do
        local target = graph[dep]
        local to = target and folder_of(target.rel)
        if to and to ~= from and LAYER[to] then
          local ok = LAYER[to] < LAYER[from] or (SAME_LAYER_PEERS[from] or {})[to]
          if ONLY[from] and not ONLY[from][to] then ok = false end
          if not ok then out[#out + 1] = mod .. " (" .. from .. "/) names " .. dep .. " (" .. to .. "/)" end
        end
      end
    end
  end
  -- A file beside a folder of the same name (sim.lua next to sim/) splits one concern.
  for _, node in pairs(graph) do
    local base = node.rel:gsub("%.lua$", "")
    for _, other in pairs(graph) do
      if other.rel:sub(1, #base + 1) == base .. "/" then
        out[#out + 1] = node.rel .. " sits beside the folder " .. base .. "/"
        break
      end
    end
  end
  table.sort(out)
  return out
end

local function graph_of_tree()
  local graph = {}
  for mod, rel in pairs(modules()) do
    local text = assert(fs.read(ROOT .. "/" .. rel))
    local names, seen = {}, {}
    for name in text:gmatch("[\"']kmsrun%.([%w_%.]+)[\"']") do
      name = "kmsrun." .. name
      if not seen[name] then seen[name] = true; names[#names + 1] = name end
    end
    graph[mod] = { rel = rel, names = names }
  end
  return graph
end

T.test("the stdlib's modules follow the folders' dependency direction", function()
  local graph = graph_of_tree()
  local count = 0
  for _ in pairs(graph) do count = count + 1 end
  T.ok(count > 50, "expected the whole stdlib, found " .. count .. " modules")
  T.eq(table.concat(violations(graph), "\n"), "")
end)

T.test("the checker catches a module that names a higher layer or sits at the top", function()
  local graph = {
    ["kmsrun.lib.json"] = { rel = "lib/json.lua", names = { "kmsrun.run.runner" } },
    ["kmsrun.run.runner"] = { rel = "run/runner.lua", names = { "kmsrun.dsl.steps", "kmsrun.lib.json" } },
    ["kmsrun.dsl.steps"] = { rel = "dsl/steps.lua", names = { "kmsrun.run.runner" } },
    ["kmsrun.emu.kms.main"] = { rel = "emu/kms/main.lua", names = { "kmsrun.report.redact" } },
    ["kmsrun.report.redact"] = { rel = "report/redact.lua", names = {} },
    ["kmsrun.stray"] = { rel = "stray.lua", names = {} },
    ["kmsrun.targets.vmm"] = { rel = "targets/vmm.lua", names = {} },
    ["kmsrun.targets.vmm.client"] = { rel = "targets/vmm/client.lua", names = {} },
  }
  T.eq(violations(graph), {
    "kmsrun.emu.kms.main (emu/) names kmsrun.report.redact (report/)",
    "kmsrun.lib.json (lib/) names kmsrun.run.runner (run/)",
    "stray.lua: not in one of the stdlib's folders",
    "targets/vmm.lua sits beside the folder targets/vmm/",
  })
end)


-- Targets see the run only through the context the runner hands every hook
-- (run/target_context.lua): no module under targets/ may index a variable named
-- `run` or reach a `.run` field (a way back to the Run). Comments and strings do
-- not count: "once per run." is prose.
local function code_only(text)
  local out, i, n = {}, 1, #text
  local function skip_to(j) -- keeps the newlines, so line numbers stay right
    out[#out + 1] = text:sub(i, j - 1):gsub("[^\n]", "")
    i = j
  end
  while i <= n do
    local long = text:match("^%-%-%[(=*)%[", i) or text:match("^%[(=*)%[", i)
    if long then
      local _, e = text:find("]" .. long .. "]", i, true)
      skip_to((e or n) + 1)
    elseif text:sub(i, i + 1) == "--" then
      skip_to(text:find("\n", i, true) or n + 1)
    elseif text:sub(i, i) == '"' or text:sub(i, i) == "'" then
      local q, j = text:sub(i, i), i + 1
      while j <= n and text:sub(j, j) ~= q do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
      skip_to(j + 1)
    else
      out[#out + 1] = text:sub(i, i)
      i = i + 1
    end
  end
  return table.concat(out)
end

local function run_mentions(rel, text)
  local found, line = {}, 0
  for l in (code_only(text) .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    if l:find("%f[%w_]run%s*[%.:%[]") or l:find("[%.:]%s*run%f[^%w_]") then
      found[#found + 1] = string.format("%s:%d: %s", rel, line, l:match("^%s*(.-)%s*$"))
    end
  end
  return found
end

T.test("no module under targets/ indexes the Run", function()
  local found, count = {}, 0
  for _, rel in pairs(modules()) do
    if rel:match("^targets/") then
      count = count + 1
      for _, f in ipairs(run_mentions(rel, assert(fs.read(ROOT .. "/" .. rel)))) do found[#found + 1] = f end
    end
  end
  T.ok(count > 15, "expected every target module, found " .. count)
  table.sort(found)
  T.eq(table.concat(found, "\n"), "")
end)

T.test("the targets check sees code, not prose", function()
  T.eq(run_mentions("t.lua", table.concat({
    "-- kept once per run. run.x in a comment",
    "local s = \"the run: run.vars\" .. [[run.error]]",
    "--[[ run.interrupted ]] local a = ctx.vars.x",
    "local b = run.vmm_session_state",
    "run:note('x')",
    "local c = ctx.run.error",
    "f(run [1])",
    "local running = p:running()",
  }, "\n")), {
    "t.lua:4: local b = run.vmm_session_state",
    "t.lua:5: run:note()",
    "t.lua:6: local c = ctx.run.error",
    "t.lua:7: f(run [1])",
  })
end)
