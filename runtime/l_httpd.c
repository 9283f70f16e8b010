/* kmsrun.httpd: the Lua face of http_server.c.
 *
 * on_request runs on the main Lua thread straight from the loop, so it cannot
 * wait; the Lua layer (kmsrun.lib.http_server) spawns a task per request instead. A
 * request's fields are copied into a table at arrival because the connection
 * (and with it evhttp's copy) may vanish before the Lua side looks. */
#include "http_server.h"
#include "register.h"
#include "task.h"

#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SERVER_MT "kmsrun.httpd.server"
#define REQUEST_MT "kmsrun.httpd.request"
#define DEFAULT_MAX_BODY (10 * 1024 * 1024)

typedef struct {
    kr_httpd *srv;      /* NULL once closed */
    lua_State *main;    /* where on_request runs */
    int fn_ref;         /* on_request */
    int self_ref;       /* an open server stays alive until closed */
    char host[64];
    int port;
    int tls;
} server_ud;

typedef struct {
    kr_httpd_req *r;    /* NULL after __gc */
    int responded;
} request_ud;

/* ---- requests ------------------------------------------------------------ */

static request_ud *check_request(lua_State *L, const char *func)
{
    request_ud *u = luaL_testudata(L, 1, REQUEST_MT);
    if (!u) luaL_error(L, "httpd.%s: expected a request, got %s (use req:%s)", func, luaL_typename(L, 1), func);
    return u;
}

static void add_header(const char *name, const char *value, void *arg)
{
    lua_State *L = arg;
    char lower[256];
    size_t n = strlen(name);
    if (n >= sizeof lower) n = sizeof lower - 1;
    for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)name[i]);
    lower[n] = '\0';
    /* Repeated headers are joined as RFC 9110 allows for list-valued fields. */
    if (lua_getfield(L, -1, lower) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushstring(L, value);
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
        lua_pushstring(L, value);
    }
    lua_setfield(L, -2, lower);
}

/* [-0, +1, m] The request's fields, read while the connection still exists. */
static void push_fields(lua_State *L, kr_httpd_req *r)
{
    lua_createtable(L, 0, 9);
    lua_pushstring(L, kr_httpd_req_method(r));
    lua_setfield(L, -2, "method");
    lua_pushstring(L, kr_httpd_req_path(r));
    lua_setfield(L, -2, "path");
    lua_pushstring(L, kr_httpd_req_query(r));
    lua_setfield(L, -2, "query");
    lua_newtable(L);
    kr_httpd_req_headers(r, add_header, L);
    lua_setfield(L, -2, "headers");
    size_t len;
    const char *body = kr_httpd_req_body(r, &len);
    lua_pushlstring(L, body ? body : "", len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, kr_httpd_req_peer_addr(r));
    lua_setfield(L, -2, "peer_addr");
    lua_pushinteger(L, kr_httpd_req_peer_port(r));
    lua_setfield(L, -2, "peer_port");
    lua_pushstring(L, kr_httpd_req_peer_cert(r));
    lua_setfield(L, -2, "peer_cert");
    lua_pushboolean(L, kr_httpd_req_tls(r));
    lua_setfield(L, -2, "tls");
}

static int l_respond(lua_State *L)
{
    request_ud *u = check_request(L, "respond");
    lua_Integer status = 0;
    if (!lua_isinteger(L, 2) || (status = lua_tointeger(L, 2)) < 200 || status > 599)
        return luaL_error(L, "httpd.respond: status must be an integer from 200 to 599, got %s",
                          luaL_tolstring(L, 2, NULL));
    size_t body_len = 0;
    const char *body = "";
    if (!lua_isnoneornil(L, 3)) {
        if (lua_type(L, 3) != LUA_TSTRING)
            return luaL_error(L, "httpd.respond: body must be a string, got %s", luaL_typename(L, 3));
        body = lua_tolstring(L, 3, &body_len);
    }
    if (!lua_isnoneornil(L, 4) && !lua_istable(L, 4))
        return luaL_error(L, "httpd.respond: headers must be a table, got %s", luaL_typename(L, 4));
    /* Names and values as strings in one list that keeps them alive while C reads them. */
    lua_newtable(L);
    int list = lua_gettop(L);
    size_t n = 0;
    if (!lua_isnoneornil(L, 4)) {
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "httpd.respond: header names must be strings, got %s", luaL_typename(L, -2));
            int t = lua_type(L, -1);
            if (t != LUA_TSTRING && t != LUA_TNUMBER)
                return luaL_error(L, "httpd.respond: header '%s' must be a string, got %s", lua_tostring(L, -2),
                                  lua_typename(L, t));
            lua_tostring(L, -1); /* numbers become strings on the stack only */
            lua_rawseti(L, list, (lua_Integer)(2 * n + 2));
            lua_pushvalue(L, -1);
            lua_rawseti(L, list, (lua_Integer)(2 * n + 1));
            n++;
        }
    }
    const char **names = lua_newuserdatauv(L, (n ? n : 1) * sizeof *names, 0);
    const char **values = lua_newuserdatauv(L, (n ? n : 1) * sizeof *values, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (lua_Integer)(2 * i + 1));
        names[i] = lua_tostring(L, -1);
        lua_rawgeti(L, list, (lua_Integer)(2 * i + 2));
        values[i] = lua_tostring(L, -1);
        lua_pop(L, 2);
        if (!kr_httpd_header_valid(names[i], values[i]))
            return luaL_error(L, "httpd.respond: invalid header '%s' (names are tokens, values have no line breaks)",
                              names[i]);
    }
    if (u->responded) return luaL_error(L, "httpd.respond: the request was already answered");
    if (!u->r) return luaL_error(L, "httpd.respond: the request is released");
    u->responded = 1;
    int rc = kr_httpd_respond(u->r, (int)status, body, body_len, names, values, n);
    lua_pushboolean(L, rc == 1);
    return 1;
}

static int request_index(lua_State *L)
{
    request_ud *u = luaL_checkudata(L, 1, REQUEST_MT);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "respond") == 0) {
        lua_pushcfunction(L, l_respond);
        return 1;
    }
    if (key && strcmp(key, "responded") == 0) {
        lua_pushboolean(L, u->responded);
        return 1;
    }
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int request_tostring(lua_State *L)
{
    request_ud *u = luaL_checkudata(L, 1, REQUEST_MT);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "method");
    lua_getfield(L, -2, "path");
    const char *state = u->responded ? "answered"
                        : (u->r && kr_httpd_req_pending(u->r)) ? "pending" : "client gone";
    lua_pushfstring(L, "request %s %s (%s)", lua_tostring(L, -2), lua_tostring(L, -1), state);
    return 1;
}

static int request_gc(lua_State *L)
{
    request_ud *u = luaL_checkudata(L, 1, REQUEST_MT);
    kr_httpd_req_release(u->r);
    u->r = NULL;
    return 0;
}

/* [-0, +1, m] The userdata takes r over (and *owned says so) before anything
 * else is allocated, so that r is released exactly once whatever fails. */
static void push_request(lua_State *L, kr_httpd_req *r, int *owned)
{
    request_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->r = NULL;
    u->responded = 0;
    luaL_setmetatable(L, REQUEST_MT);
    u->r = r;
    *owned = 1;
    push_fields(L, r);
    lua_setiuservalue(L, -2, 1);
}

/* ---- dispatch from the loop ---------------------------------------------- */

typedef struct {
    server_ud *s;
    kr_httpd_req *r;
    int owned;
} dispatch_args;

static int dispatch(lua_State *L)
{
    dispatch_args *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    push_request(L, a->r, &a->owned);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->s->fn_ref);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* The request userdata is still on this stack, so the handle is alive. */
        request_ud *u = lua_touserdata(L, 1);
        kr_error_write(L, "kmsrun: httpd on_request failed: ", luaL_tolstring(L, -1, NULL));
        if (!u->responded && u->r) {
            static const char msg[] = "internal server error";
            u->responded = 1;
            kr_httpd_respond(u->r, 500, msg, sizeof msg - 1, NULL, NULL, 0);
        }
    }
    return 0;
}

static void on_request(kr_httpd_req *r, void *arg)
{
    dispatch_args a = {arg, r, 0};
    lua_State *L = a.s->main;
    int top = lua_gettop(L);
    lua_pushcfunction(L, dispatch);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        kr_error_write(L, "kmsrun: httpd: cannot dispatch a request: ", lua_tostring(L, -1));
    if (!a.owned) kr_httpd_req_release(r);
    lua_settop(L, top);
}

/* ---- servers ------------------------------------------------------------- */

static server_ud *check_server(lua_State *L, const char *func)
{
    server_ud *s = luaL_testudata(L, 1, SERVER_MT);
    if (!s) luaL_error(L, "httpd.%s: expected a server, got %s (use srv:%s)", func, luaL_typename(L, 1), func);
    return s;
}

static void server_close(lua_State *L, server_ud *s)
{
    if (!s->srv) return;
    kr_httpd_close(s->srv);
    s->srv = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
    s->fn_ref = s->self_ref = LUA_NOREF;
}

static int l_close(lua_State *L)
{
    server_close(L, check_server(L, "close"));
    return 0;
}

static int server_gc(lua_State *L)
{
    server_close(L, luaL_checkudata(L, 1, SERVER_MT));
    return 0;
}

static int server_index(lua_State *L)
{
    server_ud *s = luaL_checkudata(L, 1, SERVER_MT);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "close") == 0) lua_pushcfunction(L, l_close);
    else if (strcmp(key, "port") == 0) lua_pushinteger(L, s->port);
    else if (strcmp(key, "host") == 0) lua_pushstring(L, s->host);
    else if (strcmp(key, "tls") == 0) lua_pushboolean(L, s->tls);
    else if (strcmp(key, "closed") == 0) lua_pushboolean(L, s->srv == NULL);
    else lua_pushnil(L);
    return 1;
}

static int server_tostring(lua_State *L)
{
    server_ud *s = luaL_checkudata(L, 1, SERVER_MT);
    int v6 = strchr(s->host, ':') != NULL;
    lua_pushfstring(L, "httpd %s://%s%s%s:%d (%s)", s->tls ? "https" : "http", v6 ? "[" : "", s->host,
                    v6 ? "]" : "", s->port, s->srv ? "listening" : "closed");
    return 1;
}

static int l_listen(lua_State *L)
{
    static const char *const known[] = {"host", "port", "tls", "max_body", NULL};
    static const char *const tls_known[] = {"cert", "key", "client_ca", "require_client_cert", NULL};
    if (!lua_isnoneornil(L, 1) && !lua_istable(L, 1))
        return luaL_error(L, "httpd.listen: options must be a table, got %s", luaL_typename(L, 1));
    if (!lua_isfunction(L, 2))
        return luaL_error(L, "httpd.listen: on_request must be a function, got %s", luaL_typename(L, 2));
    kr_check_opts(L, 1, "httpd.listen", known);

    kr_httpd_config cfg = {0};
    cfg.host = kr_opt_string(L, 1, "host", "127.0.0.1", NULL);
    cfg.port = (int)kr_opt_integer(L, 1, "port", 0, 65535, 0, NULL);
    cfg.max_body = (size_t)kr_opt_integer(L, 1, "max_body", 0, (lua_Integer)1e15, DEFAULT_MAX_BODY, NULL);

    int tls = kr_opt_table(L, 1, "tls", "a table");
    if (tls) {
        kr_check_opts(L, tls, "httpd.listen: tls", tls_known);
        cfg.cert_pem = kr_opt_string(L, tls, "tls.cert", NULL, &cfg.cert_len);
        cfg.key_pem = kr_opt_string(L, tls, "tls.key", NULL, &cfg.key_len);
        cfg.client_ca_pem = kr_opt_string(L, tls, "tls.client_ca", NULL, &cfg.client_ca_len);
        cfg.require_client_cert = kr_opt_bool(L, tls, "tls.require_client_cert", 0);
        if (!cfg.cert_pem || !cfg.key_pem) return luaL_error(L, "httpd.listen: tls needs both cert and key");
        if (cfg.require_client_cert && !cfg.client_ca_pem)
            return luaL_error(L, "httpd.listen: tls.require_client_cert needs tls.client_ca");
    }

    server_ud *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->fn_ref = s->self_ref = LUA_NOREF;
    luaL_setmetatable(L, SERVER_MT);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    s->main = lua_tothread(L, -1);
    lua_pop(L, 1);

    kr_httpd_error err = {{0}, NULL};
    s->srv = kr_httpd_listen(kr_loop_base(), &cfg, on_request, s, &err);
    if (!s->srv) return kr_fail(L, err.code, "httpd.listen: %s", err.message);
    snprintf(s->host, sizeof s->host, "%s", kr_httpd_host(s->srv));
    s->port = kr_httpd_port(s->srv);
    s->tls = kr_httpd_is_tls(s->srv);
    lua_pushvalue(L, 2);
    s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static const kr_func funcs[] = {
    {"listen", l_listen, "listen(opts, on_request)", "server | nil, err, code",
     "Starts an HTTP/1.1 server on the event loop and calls `on_request(req)` for each complete request. "
     "Low level: runbooks use `kmsrun.lib.http_server`, which runs each request in its own task.\n\n"
     "`on_request` runs straight from the loop, outside any task: it must not wait (waiting primitives "
     "raise `cannot wait outside a task`). It may keep `req` and answer later with `req:respond` from a task. "
     "If it raises, the error is printed to stderr and the client gets 500.\n\n"
     "Options: `host` (default `\"127.0.0.1\"`), `port` (default 0: any free port, read back `srv.port`), "
     "`max_body` (bytes, default 10 MiB; a larger request body gets 413 without calling `on_request`), "
     "`tls = {cert =, key =, client_ca =, require_client_cert =}` to serve HTTPS: `cert` is the PEM of the "
     "leaf certificate optionally followed by its chain, `key` its private key PEM. With `client_ca` (PEM, one "
     "or more CA certificates) the server asks clients for a certificate: one that does not chain to "
     "`client_ca` fails the handshake, none at all is accepted unless `require_client_cert = true`.\n\n"
     "The request `req` has fields `method`, `path` (without the query, not percent-decoded), `query` (raw, "
     "`\"\"` if none), `headers` (lowercase names; repeated headers joined with `, `), `body`, `peer_addr`, "
     "`peer_port`, `tls` (boolean), `peer_cert` (the client certificate as PEM, or nil) and `responded`. "
     "`req:respond(status, [body], [headers])` answers (status 200..599, body a string, headers a table of "
     "name = string); Content-Length is always set, keep-alive is kept. It returns true, or false if the client "
     "is gone (the server closed or the connection dropped) — nothing is sent then. Answering twice raises. "
     "A request dropped unanswered gets 500 when it is garbage-collected.\n\n"
     "The server has fields `host`, `port`, `tls`, `closed` and the method `srv:close()` (idempotent; stops "
     "listening at once, so the port can be listened on again, and drops open connections). An open server "
     "stays alive until closed; `<close>` variables and process exit close it too.\n\n"
     "Failures: `EADDRINUSE` (port taken), `EADDRNOTAVAIL` (host not local or unresolvable), `EACCES`, "
     "`EINVAL` (unusable certificate or key PEM, key not matching the certificate)."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.httpd", "low-level HTTP/HTTPS server (see kmsrun.lib.http_server)", funcs};

static const luaL_Reg server_meta[] = {
    {"__index", server_index}, {"__tostring", server_tostring}, {"__gc", server_gc}, {"__close", server_gc}, {NULL, NULL}};
static const luaL_Reg request_meta[] = {
    {"__index", request_index}, {"__tostring", request_tostring}, {"__gc", request_gc}, {NULL, NULL}};

int luaopen_kmsrun_httpd(lua_State *L)
{
    if (luaL_newmetatable(L, SERVER_MT)) luaL_setfuncs(L, server_meta, 0);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, REQUEST_MT)) luaL_setfuncs(L, request_meta, 0);
    lua_pop(L, 1);
    kr_newmodule(L, &module);
    return 1;
}
