-- Which kms.toml files the emulator reads, in upstream's order
-- (dstack/load_config/src/lib.rs:46-72, load_config("kms", ..., nested = false)):
-- the built-in defaults, then /etc/kms/kms.toml, /etc/kms/kms.json, ./kms.toml,
-- ./kms.json, then the -c file; each later one overrides earlier ones key by key.
-- A file that exists under /etc/kms is logged as upstream logs it (lib.rs:39), since
-- it silently supplies every key the -c file does not set.
-- KMSRUN_SIM_ETC_DIR replaces /etc/kms (tests; the emulator never writes there).
local toml = require "kmsrun.lib.toml"
local cjson = require "cjson.safe"

local M = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- A JSON layer as a table (config.load takes tables or TOML paths).
local function json_layer(path)
  local f = io.open(path, "rb")
  local text = f and f:read("a")
  if f then f:close() end
  local t = text and cjson.decode(text)
  if type(t) ~= "table" then return nil, "failed to load config: " .. path .. " is not a JSON object" end
  return t
end

--- The layers for config.load and the log lines to print, or nil, err.
-- leaf: the -c path (or nil); etc: the directory standing for /etc/kms.
function M.layers(leaf, etc)
  etc = etc or os.getenv("KMSRUN_SIM_ETC_DIR") or "/etc/kms"
  local layers, notes = {}, {}
  for _, dir in ipairs({ etc, "." }) do
    for _, ext in ipairs({ "toml", "json" }) do
      local path = dir .. "/kms." .. ext
      if exists(path) then
        notes[#notes + 1] = "Loading config file: " .. path
        if ext == "json" then
          local t, err = json_layer(path)
          if not t then return nil, err end
          layers[#layers + 1] = t
        else
          layers[#layers + 1] = path
        end
      end
    end
  end
  if leaf then
    if leaf:match("%.json$") then
      local t, err = json_layer(leaf)
      if not t then return nil, err end
      layers[#layers + 1] = t
    else
      layers[#layers + 1] = leaf
    end
  end
  return layers, notes
end

return M
