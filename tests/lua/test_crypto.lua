-- kmsrun.crypto through its Lua API.
local T = require "kmsrun.lib.testing"
local crypto = require "kmsrun.crypto"

local DSTACK_OID = "1.3.6.1.4.1.62397.1.1"

-- A SEC1 P-256 key made with `openssl ecparam -genkey`; scalar and compressed
-- point as printed by `openssl ec`.
local SEC1_PEM = [[
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIBykHaRGeAobtVI0eIIk9On4hCzVdQJQjpQ3ekomSmC2oAoGCCqGSM49
AwEHoUQDQgAEXV/FZowpez5XOuw7u9xlUys2bZ6O07oI2pQmXStrc6y+KZA6eh3x
Rrb0ecRAPwFLjVIo+Jm0d1UpYPPscUCvCg==
-----END EC PRIVATE KEY-----
]]
local SEC1_PRIV = "1ca41da446780a1bb55234788224f4e9f8842cd57502508e94377a4a264a60b6"
local SEC1_PUB = "025d5fc5668c297b3e573aec3bbbdc65532b366d9e8ed3ba08da94265d2b6b73ac"

local ENCRYPTED_PEM = [[
-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhh3lZ49tI6FQICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEEApkIbbgnVCcB8KEUVGK00AEgZDr
Y6l4IznqC7Nm691IYDt3jM+CLpWIs9QYMghPma/a9YFTbNxZXJdsEHHhIZNdqD9E
qwwU/9SiPS4KiMxh1ipZrO0P7jjngY4hG2H4qVd/hCNousUJRJD/3rhxcr97TVjj
fgOgzkmjJBQhxuriJ1s+yFMDv9BFUeuZjBCqvt3Q7NrVYLrSE8+Xds5CXHN96i4=
-----END ENCRYPTED PRIVATE KEY-----
]]

-- Asserts the world-failure triple and returns the message.
local function fails(code, ok, err, c)
  T.eq(ok, nil, "first result")
  T.eq(type(err), "string", "message")
  T.eq(c, code, "code (" .. tostring(err) .. ")")
  return err
end

local function make_ca(name)
  local key = crypto.keygen()
  local cert = assert(crypto.cert {
    key = key, subject = "O=Dstack,CN=" .. name, ca = true, pathlen = 1,
    key_usage = { "keyCertSign", "cRLSign" },
  })
  return key, cert
end

T.test("random returns fresh bytes of the requested length", function()
  T.eq(#crypto.random(0), 0)
  local a, b = crypto.random(32), crypto.random(32)
  T.eq(#a, 32)
  T.ok(a ~= b, "two draws differ")
  T.eq(#crypto.random(100000), 100000)
end)

T.test("digests and hmac match known vectors", function()
  T.eq(crypto.hex(crypto.sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  T.eq(crypto.hex(crypto.sha384("abc")),
    "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7")
  T.eq(crypto.hex(crypto.sha512("abc")),
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
  T.eq(#crypto.sha256(""), 32)
  T.eq(crypto.hex(crypto.hmac_sha256("Jefe", "what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") -- RFC 4231 case 2
  T.eq(crypto.hex(crypto.hmac_sha256("", "")), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
end)

T.test("hex round trips and rejects bad input", function()
  local all = {}
  for i = 0, 255 do all[#all + 1] = string.char(i) end
  all = table.concat(all)
  T.eq(crypto.unhex(crypto.hex(all)), all)
  T.eq(crypto.hex("\0\255\16"), "00ff10")
  T.eq(crypto.hex(""), "")
  T.eq(crypto.unhex("DEADbeef"), "\222\173\190\239")
  T.eq(crypto.unhex(""), "")
  T.contains(fails("EINVAL", crypto.unhex("abc")), "crypto.unhex: odd number of hex digits")
  T.contains(fails("EINVAL", crypto.unhex("zz")), "crypto.unhex: invalid hex digit")
  fails("EINVAL", crypto.unhex("0x12"))
  fails("EINVAL", crypto.unhex("12 34"))
end)

T.test("base64 round trips and rejects bad input", function()
  local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
    foobar = "Zm9vYmFy" } -- RFC 4648
  for plain, enc in pairs(vectors) do
    T.eq(crypto.base64(plain), enc)
    T.eq(crypto.unbase64(enc), plain)
  end
  local bytes = crypto.random(1000)
  T.eq(crypto.unbase64(crypto.base64(bytes)), bytes)
  T.eq(crypto.unbase64("Zm9v\nYmE"), "fooba", "whitespace ignored, padding optional")
  for _, bad in ipairs { "Z", "Zg=", "Zm9v=", "Zm-v", "Zg==Zg==", "Zg===", "****" } do
    T.contains(fails("EINVAL", crypto.unbase64(bad)), "crypto.unbase64: ")
  end
end)

T.test("keygen makes PKCS#8 keys on both curves", function()
  local k = crypto.keygen()
  T.match(k, "^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n")
  T.eq(crypto.key_info(k).curve, "P-256")
  T.eq(crypto.key_info(crypto.keygen("P-256")).curve, "P-256")
  local s = crypto.keygen("secp256k1")
  T.match(s, "^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n")
  T.eq(crypto.key_info(s).curve, "secp256k1")
  T.ok(crypto.keygen() ~= crypto.keygen(), "keys are fresh")
end)

T.test("key_info reports scalar, point and encodings", function()
  for _, curve in ipairs { "P-256", "secp256k1" } do
    local k = crypto.keygen(curve)
    local info = crypto.key_info(k)
    T.eq(#info.private_raw, 32)
    T.eq(#info.public_compressed, 33)
    T.match(info.public_compressed:sub(1, 1), "[\2\3]")
    T.match(info.public_pem, "^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\n")
    T.eq(info.public_der:byte(1), 0x30)
    -- key_from_raw(private_raw) is the same key.
    local again = crypto.key_info(crypto.key_from_raw(curve, info.private_raw))
    T.eq(again, info)
    -- The public PEM describes the same point and has no scalar.
    local pub = crypto.key_info(info.public_pem)
    T.eq(pub.private_raw, nil)
    T.eq(pub.public_compressed, info.public_compressed)
    T.eq(pub.public_der, info.public_der)
    T.eq(pub.curve, curve)
  end
end)

T.test("key_from_raw: scalar 1 gives the generator; compressed points match known values", function()
  local one = string.rep("\0", 31) .. "\1"
  T.eq(crypto.hex(crypto.key_info(crypto.key_from_raw("secp256k1", one)).public_compressed),
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
  T.eq(crypto.hex(crypto.key_info(crypto.key_from_raw("P-256", one)).public_compressed),
    "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
  local sec1 = crypto.key_info(SEC1_PEM)
  T.eq(sec1.curve, "P-256")
  T.eq(crypto.hex(sec1.private_raw), SEC1_PRIV)
  T.eq(crypto.hex(sec1.public_compressed), SEC1_PUB)
  T.eq(crypto.key_info(crypto.key_from_raw("P-256", crypto.unhex(SEC1_PRIV))).public_der, sec1.public_der)
end)

T.test("key_from_raw rejects bad scalars", function()
  T.contains(fails("EINVAL", crypto.key_from_raw("P-256", string.rep("\0", 32))), "crypto.key_from_raw: scalar out of range")
  fails("EINVAL", crypto.key_from_raw("P-256",
    crypto.unhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")))
  T.contains(fails("EINVAL", crypto.key_from_raw("secp256k1", "short")), "32 bytes")
  fails("EINVAL", crypto.key_from_raw("secp256k1", string.rep("\255", 32)))
end)

T.test("sign and verify", function()
  local k = crypto.keygen("secp256k1")
  local info = crypto.key_info(k)
  local sig = crypto.sign(k, "message")
  T.eq(sig:byte(1), 0x30, "DER sequence")
  T.eq(crypto.verify(k, "message", sig), true)
  T.eq(crypto.verify(info.public_pem, "message", sig), true)
  T.eq(crypto.verify(info.public_pem, "messagf", sig), false)
  T.eq(crypto.verify(info.public_pem, "message", "garbage"), false)
  T.eq(crypto.verify(crypto.keygen("secp256k1"), "message", sig), false)
  -- A certificate stands for its public key.
  local cert = crypto.cert { key = k, subject = { CN = "signer" } }
  T.eq(crypto.verify(cert, "message", sig), true)
  T.eq(crypto.verify(cert, "message", crypto.sign(crypto.keygen("secp256k1"), "message")), false)
  T.contains(fails("EINVAL", crypto.sign(info.public_pem, "x")), "crypto.sign: expected a private key PEM")
end)

T.test("extendedKeyUsage: serverAuth and clientAuth; absent unless asked", function()
  local k = crypto.keygen()
  local both = assert(crypto.parse_cert(assert(crypto.cert { key = k, ext_key_usage = { "serverAuth", "clientAuth" } })))
  -- SEQUENCE { id-kp-serverAuth (1.3.6.1.5.5.7.3.1), id-kp-clientAuth (1.3.6.1.5.5.7.3.2) }
  T.eq(crypto.hex(both.extensions["2.5.29.37"]), "301406082b0601050507030106082b06010505070302")
  local client = assert(crypto.parse_cert(assert(crypto.cert { key = k, ext_key_usage = { "clientAuth" } })))
  T.eq(crypto.hex(client.extensions["2.5.29.37"]), "300a06082b06010505070302")
  T.eq(assert(crypto.parse_cert(assert(crypto.cert { key = k }))).extensions["2.5.29.37"], nil)
end)

T.test("CA and CA-signed leaf with SANs and a custom extension read back", function()
  local ca_key, ca = make_ca("Dstack KMS CA")
  local leaf_key = crypto.keygen()
  local quote = crypto.random(64) .. "\0tail"
  local leaf = assert(crypto.cert {
    key = leaf_key,
    subject = { CN = "kms.example", O = "Dstack", C = "US" },
    issuer_cert = ca, issuer_key = ca_key,
    san = { "DNS:kms.example", "IP:127.0.0.1", "10.1.2.3", "IP:::1", "localhost" },
    key_usage = { "digitalSignature", "keyEncipherment" },
    extensions = { { oid = DSTACK_OID, value = quote }, { oid = "1.2.3.4.5", value = "", critical = false } },
    days = 30, serial = 4660,
  })
  T.match(leaf, "^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n")

  local p = assert(crypto.parse_cert(leaf))
  T.eq(p.subject, "C=US, O=Dstack, CN=kms.example")
  T.eq(p.subject_fields, { C = "US", O = "Dstack", CN = "kms.example" })
  T.eq(p.issuer, "O=Dstack, CN=Dstack KMS CA")
  T.eq(p.issuer_fields, { O = "Dstack", CN = "Dstack KMS CA" })
  T.eq(p.san, { "DNS:kms.example", "IP:127.0.0.1", "IP:10.1.2.3", "IP:::1", "DNS:localhost" })
  T.eq(p.extensions[DSTACK_OID], quote)
  T.eq(p.extensions["1.2.3.4.5"], "")
  T.ok(p.extensions["2.5.29.35"], "authorityKeyIdentifier")
  T.eq(p.extensions["2.5.29.15"], "\3\2\5\160", "keyUsage DER: digitalSignature, keyEncipherment")
  T.eq(p.is_ca, false)
  T.eq(p.pathlen, nil)
  T.eq(p.serial, "1234")
  T.eq(p.not_after - p.not_before, 30 * 86400)
  T.ok(math.abs(p.not_before - os.time()) < 60, "not_before is now")
  T.eq(p.fingerprint, crypto.hex(crypto.sha256(p.der)))
  T.eq(p.public_key_der, crypto.key_info(leaf_key).public_der)
  T.eq(p.public_key_pem, crypto.key_info(leaf_key).public_pem)
  T.eq(crypto.parse_cert(p.der).fingerprint, p.fingerprint, "DER input")

  local c = crypto.parse_cert(ca)
  T.eq(c.is_ca, true)
  T.eq(c.pathlen, 1)
  T.eq(c.subject, c.issuer)
  T.eq(#c.extensions["2.5.29.14"], 20, "subjectKeyIdentifier")
  T.eq(p.extensions["2.5.29.35"]:sub(-20), c.extensions["2.5.29.14"], "leaf AKI names the CA's SKI")
  T.eq(#c.serial, 16, "random 64-bit serial")
end)

T.test("cert: subject forms, validity offsets, self-signed defaults", function()
  local k = crypto.keygen()
  local p = crypto.parse_cert(crypto.cert { key = k, subject = "CN=a\\, b,O=x , OU=y" })
  T.eq(p.subject, "CN=a\\, b, O=x, OU=y")
  T.eq(p.subject_fields, { CN = "a, b", O = "x", OU = "y" })
  T.eq(crypto.parse_cert(crypto.cert { key = k, subject = p.subject }).subject, p.subject, "one-line form reads back")
  T.eq(p.not_after - p.not_before, 3650 * 86400, "default 10 years")
  T.eq(p.extensions["2.5.29.35"], nil, "no AKI on a self-signed leaf")
  local q = crypto.parse_cert(crypto.cert { key = k, subject = { CN = "x", emailAddress = "a@b", L = "Here" },
    not_before_offset = -86400, days = 0.5 })
  T.eq(q.subject, "L=Here, CN=x, emailAddress=a@b")
  T.ok(math.abs(q.not_before - (os.time() - 86400)) < 60, "backdated")
  T.eq(q.not_after - q.not_before, 43200)
  local e = crypto.parse_cert(crypto.cert { key = k, san = { "DNS:only.example" } })
  T.eq(e.subject, "")
  T.eq(e.subject_fields, {})
  T.eq(e.san, { "DNS:only.example" })
end)

T.test("verify_chain accepts the issuing CA and rejects an unrelated one", function()
  local ca_key, ca = make_ca("Root")
  local leaf = crypto.cert { key = crypto.keygen(), subject = { CN = "leaf" }, issuer_cert = ca, issuer_key = ca_key,
    days = 1 }
  T.eq(crypto.verify_chain(leaf, { roots = ca }), true)
  T.eq(crypto.verify_chain(leaf, { roots = { ca } }), true)

  local _, other = make_ca("Root") -- same name, different key
  local ok, reason, code = crypto.verify_chain(leaf, { roots = other })
  T.eq({ ok, reason, code }, { nil, "unable to get local issuer certificate", "EVERIFY" })
  T.eq(crypto.verify_chain(leaf, { roots = { other, ca } }), true, "any root may match")
  T.eq(crypto.verify_chain(leaf, { roots = other .. ca }), true, "bundle string")

  local now = os.time()
  T.eq({ crypto.verify_chain(leaf, { roots = ca, time = now + 2 * 86400 }) },
    { nil, "certificate has expired", "EVERIFY" })
  T.eq({ crypto.verify_chain(leaf, { roots = ca, time = now - 3600 }) },
    { nil, "certificate is not yet valid", "EVERIFY" })
end)

T.test("verify_chain with an intermediate", function()
  local root_key, root = make_ca("Root")
  local mid_key = crypto.keygen()
  local mid = crypto.cert { key = mid_key, subject = "CN=Mid", issuer_cert = root, issuer_key = root_key, ca = true,
    pathlen = 0 }
  local leaf_key = crypto.keygen()
  local leaf = crypto.cert { key = leaf_key, subject = "CN=leaf", issuer_cert = mid, issuer_key = mid_key }
  T.eq(crypto.parse_cert(mid).pathlen, 0)
  fails("EVERIFY", crypto.verify_chain(leaf, { roots = root }))
  T.eq(crypto.verify_chain(leaf, { roots = root, intermediates = mid }), true)
  T.eq(crypto.verify_chain(leaf, { roots = root, intermediates = { mid } }), true)
  T.eq(crypto.verify_chain(leaf .. mid, { roots = root }), true, "chain after the leaf")
  T.eq(crypto.verify_chain(leaf, { roots = mid }), true, "a pinned intermediate is an anchor")
  -- A certificate issued by a non-CA leaf does not verify.
  local fake = crypto.cert { key = crypto.keygen(), subject = "CN=fake", issuer_cert = leaf, issuer_key = leaf_key }
  T.eq({ crypto.verify_chain(fake, { roots = root, intermediates = { mid, leaf } }) },
    { nil, "invalid CA certificate", "EVERIFY" })
end)

T.test("split_pem", function()
  local k = crypto.keygen()
  local a = crypto.cert { key = k, subject = "CN=a" }
  local b = crypto.cert { key = k, subject = "CN=b" }
  local blocks = crypto.split_pem("header\n" .. a .. "between\n" .. k .. b:gsub("\n$", ""))
  T.eq(blocks, { a, k, b })
  T.eq(crypto.split_pem(a .. k .. b, { label = "CERTIFICATE" }), { a, b })
  T.eq(crypto.split_pem("no pem here"), {})
  T.eq(crypto.split_pem(""), {})
end)

T.test("bad PEM inputs return nil, err, code and never crash", function()
  local k = crypto.keygen()
  local ca_key, ca = make_ca("Root")
  local bad = { "", "garbage", "\0\1\2", SEC1_PEM:sub(1, 60), ENCRYPTED_PEM,
    "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }
  -- Every prefix of valid PEMs, too.
  for _, good in ipairs { k, ca } do
    for n = 0, #good - 40, 37 do bad[#bad + 1] = good:sub(1, n) end
  end
  for _, b in ipairs(bad) do
    fails("EINVAL", crypto.key_info(b))
    fails("EINVAL", crypto.sign(b, "x"))
    fails("EINVAL", crypto.verify(b, "x", "sig"))
    fails("EINVAL", crypto.parse_cert(b))
    fails("EINVAL", crypto.cert { key = b })
    fails("EINVAL", crypto.cert { key = k, issuer_cert = b, issuer_key = ca_key })
    fails("EINVAL", crypto.cert { key = k, issuer_cert = ca, issuer_key = b })
    fails("EINVAL", crypto.verify_chain(b, { roots = ca }))
    fails("EINVAL", crypto.verify_chain(ca, { roots = b }))
    fails("EINVAL", crypto.verify_chain(ca, { roots = ca, intermediates = b }))
  end
  T.contains(fails("EINVAL", crypto.key_info(ENCRYPTED_PEM)), "encrypted keys are not supported")
  T.contains(fails("EINVAL", crypto.parse_cert("garbage")), "crypto.parse_cert: no certificate found")
  T.contains(fails("EINVAL", crypto.cert { key = "garbage" }), "crypto.cert: key: ")
  T.contains(fails("EINVAL", crypto.verify_chain(ca, { roots = "x" })), "crypto.verify_chain: roots: no certificate")
end)

T.test("cert: bad values return EINVAL", function()
  local k = crypto.keygen()
  local other_key, ca = crypto.keygen(), select(2, make_ca("CA"))
  T.contains(fails("EINVAL", crypto.cert { key = k, issuer_cert = ca, issuer_key = other_key }),
    "issuer_key does not match")
  T.contains(fails("EINVAL", crypto.cert { key = k, san = { "IP:300.1.1.1" } }), "crypto.cert: san: ")
  fails("EINVAL", crypto.cert { key = k, san = { "DNS:" } })
  T.contains(fails("EINVAL", crypto.cert { key = k, extensions = { { oid = "nope", value = "x" } } }),
    "extensions[1]: invalid OID")
  T.contains(fails("EINVAL", crypto.cert { key = k, subject = { C = "USA" } }), "C='USA'")
  fails("EINVAL", crypto.cert { key = crypto.key_info(k).public_pem }) -- self-signing needs the private key
end)

-- Runs fn and checks that it raises "crypto.<name>: ...".
local function misuse(name, fn, pattern)
  local err = T.raises(fn, "crypto%." .. name .. ": ")
  if pattern then T.match(err, "crypto%." .. name .. ": .-" .. pattern) end
  return err
end

T.test("misuse raises with the function's name", function()
  local k = crypto.keygen()
  misuse("random", function() crypto.random(-1) end, "n must be")
  misuse("random", function() crypto.random("x") end)
  misuse("random", function() crypto.random(1.5) end)
  misuse("random", function() crypto.random("5") end)
  for _, name in ipairs { "sha256", "sha384", "sha512", "hex", "unhex", "base64", "unbase64", "key_info",
    "parse_cert", "split_pem" } do
    misuse(name, function() crypto[name](nil) end, "%w+ must be a string, got nil")
    misuse(name, function() crypto[name](42) end, "%w+ must be a string, got number")
  end
  misuse("hmac_sha256", function() crypto.hmac_sha256("k") end, "data must be a string")
  misuse("hmac_sha256", function() crypto.hmac_sha256(nil, "d") end, "key must be a string")
  misuse("keygen", function() crypto.keygen("P-384") end, "unknown curve 'P%-384'")
  misuse("keygen", function() crypto.keygen(1) end)
  misuse("key_from_raw", function() crypto.key_from_raw("ed25519", string.rep("\1", 32)) end, "unknown curve")
  misuse("key_from_raw", function() crypto.key_from_raw("P-256") end, "raw must be a string")
  misuse("sign", function() crypto.sign(k) end, "data must be a string")
  misuse("verify", function() crypto.verify(k, "d") end, "sig must be a string")
  misuse("split_pem", function() crypto.split_pem("", { lable = "X" }) end, "unknown option 'lable' %(did you mean 'label'%?%)")
  misuse("split_pem", function() crypto.split_pem("", "CERTIFICATE") end, "options must be a table")

  misuse("cert", function() crypto.cert() end, "options must be a table")
  misuse("cert", function() crypto.cert(k) end, "options must be a table")
  misuse("cert", function() crypto.cert {} end, "option 'key' is required")
  misuse("cert", function() crypto.cert { key = k, dayz = 3 } end, "unknown option 'dayz' %(did you mean 'days'%?%)")
  misuse("cert", function() crypto.cert { key = k, days = "3" } end, "option 'days' must be a number")
  misuse("cert", function() crypto.cert { key = k, ca = 1 } end, "option 'ca' must be a boolean")
  misuse("cert", function() crypto.cert { key = k, issuer_cert = k } end, "options 'issuer_cert' and 'issuer_key' go together")
  misuse("cert", function() crypto.cert { key = k, issuer_key = k } end, "go together")
  misuse("cert", function() crypto.cert { key = k, pathlen = 1 } end, "requires ca = true")
  misuse("cert", function() crypto.cert { key = k, ca = true, pathlen = -1 } end, "option 'pathlen' must be an integer")
  misuse("cert", function() crypto.cert { key = k, serial = 0 } end, "option 'serial' must be an integer")
  misuse("cert", function() crypto.cert { key = k, serial = 1.5 } end, "option 'serial'")
  misuse("cert", function() crypto.cert { key = k, subject = 5 } end, "option 'subject' must be a string or a table")
  misuse("cert", function() crypto.cert { key = k, subject = "CN" } end, "subject: 'CN' is not of the form")
  misuse("cert", function() crypto.cert { key = k, subject = "XX=1" } end, "subject: unknown attribute 'XX'")
  misuse("cert", function() crypto.cert { key = k, subject = { XX = "1" } } end, "unknown attribute 'XX'")
  misuse("cert", function() crypto.cert { key = k, subject = { CN = 1 } } end, "must be strings")
  misuse("cert", function() crypto.cert { key = k, san = "DNS:x" } end, "option 'san' must be a list")
  misuse("cert", function() crypto.cert { key = k, san = { 1 } } end, "san%[1%] must be a string")
  misuse("cert", function() crypto.cert { key = k, key_usage = { "signing" } } end, "key_usage%[1%]: expected")
  misuse("cert", function() crypto.cert { key = k, ext_key_usage = { "codeSigning" } } end, "ext_key_usage%[1%]: expected")
  misuse("cert", function() crypto.cert { key = k, extensions = { "x" } } end, "extensions%[1%] must be a table")
  misuse("cert", function() crypto.cert { key = k, extensions = { { oid = "1.2.3" } } } end, "needs both")
  misuse("cert", function() crypto.cert { key = k, extensions = { { oid = "1.2", value = "", crit = true } } } end,
    "extensions%[1%]: unknown option 'crit'")

  misuse("verify_chain", function() crypto.verify_chain(k) end, "options must be a table")
  misuse("verify_chain", function() crypto.verify_chain(k, {}) end, "option 'roots' is required")
  misuse("verify_chain", function() crypto.verify_chain(k, { roots = k, rots = 1 }) end, "unknown option 'rots'")
  misuse("verify_chain", function() crypto.verify_chain(k, { roots = 5 }) end, "option 'roots' must be")
  misuse("verify_chain", function() crypto.verify_chain(k, { roots = { 5 } }) end, "roots%[1%] must be a string")
  misuse("verify_chain", function() crypto.verify_chain(k, { roots = k, time = "now" }) end, "option 'time'")
end)

T.test("every function is documented", function()
  local core = require "kmsrun.core"
  local docs = core.docs()["kmsrun.crypto"]
  local names = {}
  for _, f in ipairs(docs.funcs) do
    names[#names + 1] = f.name
    T.ok(#f.doc > 20 and #f.signature > 0 and #f.returns > 0, f.name .. " has docs")
    T.eq(type(crypto[f.name]), "function")
  end
  table.sort(names)
  T.eq(names, { "base64", "cert", "hex", "hmac_sha256", "key_from_raw", "key_info", "keygen", "parse_cert",
    "random", "sha256", "sha384", "sha512", "sign", "split_pem", "unbase64", "unhex", "verify", "verify_chain" })
end)
