-- The JSON lexical layer both byte-exact decoders share (lib/json_scan.lua): the
-- same token, two peers' answers. serde_json's texts and positions are the
-- emulator's wire contract (kms-protocol.md 1.3); JSON.parse keeps unpaired
-- surrogates where serde_json refuses them.
local T = require "kmsrun.lib.testing"
local js = require "kmsrun.lib.json_js"
local serde = require "kmsrun.lib.json_serde"

local function serde_error(text)
  local v, err = serde.decode_any(text)
  T.eq(v, nil, text)
  return err
end

T.test("strings: escapes and surrogate pairs decode alike", function()
  local text = '"a\\n\\t\\/\\"\\u00e9\\ud83d\\ude00"'
  T.eq(serde.decode_any(text), 'a\n\t/"é😀')
  T.eq(js.decode(text), 'a\n\t/"é😀')
end)

T.test("strings: serde_json's errors and positions", function()
  T.eq(serde_error('"abc'), "EOF while parsing a string at line 1 column 4")
  T.eq(serde_error('"a\1"'), "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 3")
  T.eq(serde_error('"\\q"'), "invalid escape at line 1 column 3")
  T.eq(serde_error('"\\u12g4"'), "invalid escape at line 1 column 6")
  T.eq(serde_error('"\\ud800"'), "unexpected end of hex escape at line 1 column 7")
  T.eq(serde_error('"\\ud800\\u0041"'), "lone leading surrogate in hex escape at line 1 column 13")
  T.eq(serde_error('"\\udc00"'), "lone leading surrogate in hex escape at line 1 column 7")
  T.eq(serde_error('"\\u12'), "EOF while parsing a string at line 1 column 5")
end)

T.test("strings: JSON.parse keeps unpaired surrogates (WTF-8) and names the byte", function()
  T.eq(js.decode('"\\ud800x"'), utf8.char(0xD800) .. "x")
  T.eq(js.decode('"\\udc00"'), utf8.char(0xDC00))
  T.eq(js.decode('"\\ud800\\u0041"'), utf8.char(0xD800) .. "A")
  T.eq(select(2, js.decode('"ab')), "invalid JSON at byte 3: unexpected end of input")
  T.eq(select(2, js.decode('"\\q"')), "invalid JSON at byte 3: bad escape")
  T.eq(select(2, js.decode('"a\1"')), "invalid JSON at byte 3: control character in string")
end)

T.test("numbers: one grammar, each peer's words", function()
  T.eq(serde.decode_any("-12.5e1"), -125.0)
  T.eq(js.decode("-12.5e1"), -125)
  T.eq(serde_error("01"), "invalid number at line 1 column 2")
  T.eq(serde_error("1."), "EOF while parsing a value at line 1 column 2")
  T.eq(serde_error("1.x"), "invalid number at line 1 column 3")
  T.eq(serde_error("1e+"), "EOF while parsing a value at line 1 column 3")
  T.eq(serde_error("-"), "EOF while parsing a value at line 1 column 1")
  T.eq(select(2, js.decode("01")), "invalid JSON at byte 2: bad number")
  T.eq(select(2, js.decode("-x")), "invalid JSON at byte 2: bad number")
  T.eq(js.decode("9007199254740993"), 9007199254740992.0)
end)
