/* kmsrun.http: HTTP(S) requests from tasks, on the shared loop.
 *
 * This file only translates between Lua and the plain C client
 * (http_client.h): it validates the arguments (misuse raises before anything
 * is allocated), starts the transfer, suspends the task, and turns the result
 * into a response table or the nil, message, code triple. */
#include "http_client.h"
#include "register.h"
#include "task.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define WHERE "http.request"

enum { DEFAULT_MAX_BODY = 16 << 20 };

typedef struct {
    kr_wait *w;
    kr_http_xfer *x;        /* NULL once the transfer has completed */
    kr_http_result *res;
} request_op;

static const char *const request_opts[] = {
    "method", "headers", "body", "timeout", "connect_timeout", "tls",
    "unix_socket", "max_body", "fresh", NULL};
static const char *const tls_opts[] = {"ca", "cert", "key", "insecure", "verify_host", NULL};

/* ---- argument checking -------------------------------------------------- */

/* RFC 9110 token characters: what a method or a header name may contain. */
static int is_token(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c)) return 0;
    }
    return 1;
}

static double check_seconds(lua_State *L, const char *key, double v)
{
    if (!(v > 0 && v <= 1e6)) luaL_error(L, WHERE ": option '%s' must be > 0 seconds, got %f", key, v);
    return v;
}

/* [-0, +(0|1), e] Read opts.headers into an array that lives in a userdata
 * left on the stack (so a later raise leaks nothing). Number values become
 * strings, kept alive in the same userdata's user value. */
static void read_headers(lua_State *L, int opts, kr_http_request *req)
{
    int src = kr_opt_table(L, opts, "headers", "a table");
    if (!src) return;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pop(L, 1);
        n++;
    }
    kr_http_header *h = lua_newuserdatauv(L, (n ? n : 1) * sizeof *h, 1);
    lua_newtable(L);
    int keep = lua_gettop(L);
    lua_pushvalue(L, keep);
    lua_setiuservalue(L, keep - 1, 1);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, src)) {
        if (lua_type(L, -2) != LUA_TSTRING || !is_token(lua_tostring(L, -2)))
            luaL_error(L, WHERE ": header names must be non-empty tokens (letters, digits, -), got %s",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2));
        const char *name = lua_tostring(L, -2);
        int vt = lua_type(L, -1);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
            luaL_error(L, WHERE ": header '%s' must be a string, got %s", name, lua_typename(L, vt));
        size_t vlen;
        const char *value = lua_tolstring(L, -1, &vlen); /* converts the stack copy only */
        if (strlen(value) != vlen || strpbrk(value, "\r\n"))
            luaL_error(L, WHERE ": header '%s' must not contain line breaks or NUL", name);
        lua_rawseti(L, keep, (lua_Integer)i + 1); /* anchors the value string */
        h[i].name = name;
        h[i].value = value;
        i++;
    }
    lua_settop(L, keep - 1); /* the table anchors the names, the userdata the rest */
    lua_remove(L, src);
    req->headers = h;
    req->nheaders = i;
}

/* [-0, +(0|1), e] Read opts.tls into req; the table stays on the stack. */
static void read_tls(lua_State *L, int opts, kr_http_request *req)
{
    req->verify_host = 1;
    int t = kr_opt_table(L, opts, "tls", "a table");
    if (!t) return;
    kr_check_opts(L, t, WHERE ": tls", tls_opts);
    req->ca_pem = kr_opt_string(L, t, "tls.ca", NULL, &req->ca_len);
    req->cert_pem = kr_opt_string(L, t, "tls.cert", NULL, &req->cert_len);
    req->key_pem = kr_opt_string(L, t, "tls.key", NULL, &req->key_len);
    req->insecure = kr_opt_bool(L, t, "tls.insecure", 0);
    req->verify_host = kr_opt_bool(L, t, "tls.verify_host", 1);
    if (!req->cert_pem != !req->key_pem) luaL_error(L, WHERE ": tls.cert and tls.key must be given together");
}

/* [-0, +n, e] Validate everything and fill req. Every value req points to
 * stays on the stack until the request has been started. */
static void read_request(lua_State *L, kr_http_request *req)
{
    luaL_checkstack(L, 16, WHERE);
    if (lua_type(L, 1) != LUA_TSTRING) luaL_error(L, WHERE ": url must be a string, got %s", luaL_typename(L, 1));
    kr_check_opts(L, 2, WHERE, request_opts);
    memset(req, 0, sizeof *req);
    req->url = lua_tostring(L, 1);
    char err[512];
    if (kr_http_check_url(req->url, err, sizeof err) != 0) luaL_error(L, WHERE ": %s", err);

    req->method = kr_opt_string(L, 2, "method", NULL, NULL);
    if (req->method && !is_token(req->method))
        luaL_error(L, WHERE ": method must be an HTTP token such as GET or POST, got '%s'", req->method);
    req->body = kr_opt_string(L, 2, "body", NULL, &req->body_len);
    req->timeout = check_seconds(L, "timeout", kr_opt_number(L, 2, "timeout", 30));
    req->connect_timeout = check_seconds(L, "connect_timeout", kr_opt_number(L, 2, "connect_timeout", 10));
    req->unix_socket = kr_opt_string(L, 2, "unix_socket", NULL, NULL);
    if (req->unix_socket && !*req->unix_socket) luaL_error(L, WHERE ": option 'unix_socket' must not be empty");
    req->fresh = kr_opt_bool(L, 2, "fresh", 0);
    req->max_body = (size_t)kr_opt_integer(L, 2, "max_body", 0, LUA_MAXINTEGER, DEFAULT_MAX_BODY, NULL);
    read_tls(L, 2, req);
    read_headers(L, 2, req);
}

/* ---- the request -------------------------------------------------------- */

static void on_done(kr_http_result *res, void *arg)
{
    request_op *op = arg;
    op->x = NULL;
    op->res = res;
    kr_wait_done(op->w);
}

static void cancel_request(void *ctx)
{
    request_op *op = ctx;
    kr_http_abort(op->x);
    kr_http_result_free(op->res);
    free(op);
}

static void push_response(lua_State *L, const kr_http_result *res)
{
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    lua_createtable(L, 0, (int)res->nheaders);
    for (size_t i = 0; i < res->nheaders; i++) {
        lua_pushstring(L, res->headers[i].value);
        lua_setfield(L, -2, res->headers[i].name);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, res->body ? res->body : "", res->body_len);
    lua_setfield(L, -2, "body");
    lua_pushnumber(L, res->time);
    lua_setfield(L, -2, "time");
    lua_pushboolean(L, res->reused);
    lua_setfield(L, -2, "reused");
    if (res->ncerts) {
        lua_createtable(L, (int)res->ncerts, 0);
        for (size_t i = 0; i < res->ncerts; i++) {
            lua_pushstring(L, res->certs[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "certs");
    }
    if (res->http_version) {
        lua_pushstring(L, res->http_version);
        lua_setfield(L, -2, "http_version");
    }
}

static int push_result(lua_State *L, void *ctx)
{
    request_op *op = ctx;
    kr_http_result *res = op->res;
    free(op);
    int n;
    if (res->code) {
        n = kr_fail(L, res->code, WHERE ": %s", res->message ? res->message : "failed");
    } else {
        push_response(L, res);
        n = 1;
    }
    kr_http_result_free(res);
    return n;
}

static int l_request(lua_State *L)
{
    kr_http_request req;
    read_request(L, &req);
    kr_task_check(L, WHERE);
    const char *what = lua_pushfstring(L, WHERE " %s %s", req.method ? req.method : "GET", req.url);
    request_op *op = calloc(1, sizeof *op);
    if (!op) return luaL_error(L, WHERE ": out of memory");
    char err[512];
    op->x = kr_http_start(kr_loop_base(), &req, on_done, op, err, sizeof err);
    if (!op->x) {
        free(op);
        return kr_fail(L, "EHTTP", WHERE ": %s: %s", err, req.url);
    }
    /* Nothing completes before the loop runs again, so the wait can follow the start. */
    op->w = kr_wait_new(L, what, push_result, cancel_request, op);
    return kr_wait_yield(L, op->w);
}

/* ---- module ------------------------------------------------------------- */

static const char SHUTDOWN_KEY = 'h';

/* Runs when the Lua state closes: after kr_loop_shutdown has cancelled every
 * waiting request, before the event base is freed. */
static int l_shutdown(lua_State *L)
{
    (void)L;
    kr_http_shutdown();
    return 0;
}

static void register_shutdown(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SHUTDOWN_KEY) != LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_shutdown);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SHUTDOWN_KEY);
}

static const kr_func funcs[] = {
    {"request", l_request, "request(url [, opts])", "response | nil, err, code",
     "Sends one HTTP request to `url` (`http://` or `https://`) and waits for the whole response; "
     "only the calling task waits. Connections are kept alive and reused by later requests to the "
     "same peer with the same TLS settings. Redirects are not followed; proxy environment variables "
     "are ignored.\n\n"
     "Options (all optional):\n\n"
     "- `method`: any HTTP verb, sent as given (methods are case-sensitive), default `\"GET\"`. `POST`, `PUT` "
     "and `PATCH` without `body` send an empty body.\n"
     "- `headers`: table of name → value (strings or numbers). No `Content-Type` is added unless given.\n"
     "- `body`: request body (a string; bytes are sent as they are).\n"
     "- `timeout`: limit for the whole request in seconds, default 30.\n"
     "- `connect_timeout`: limit for connecting (TCP and TLS handshake) in seconds, default 10.\n"
     "- `tls`: `{ca = PEM, cert = PEM, key = PEM, insecure = bool, verify_host = bool}`. "
     "`ca` pins the server to the given CA certificate(s): the system trust store is not used. "
     "Without `ca` the system trust store is used. `cert` and `key` (together) present a client "
     "certificate (mutual TLS); `cert` may hold a chain. `insecure = true` disables all verification. "
     "`verify_host = false` keeps the chain verification but accepts any host name in the certificate.\n"
     "- `unix_socket`: path of a Unix socket to talk HTTP over; the URL still gives the host and path.\n"
     "- `max_body`: largest response body kept, in bytes, default 16 MiB; a larger one fails with `ETOOBIG`.\n"
     "- `fresh`: `true` opens a new connection instead of reusing a kept-alive one.\n\n"
     "The response is a table: `status` (number), `headers` (lowercase name → value; repeated "
     "headers joined with `\", \"`), `body` (string; also for 4xx and 5xx statuses, which are "
     "responses, not failures), `time` (seconds taken), `reused` (true if no new connection was "
     "made), `http_version` (`\"1.1\"`, `\"2\"`, ...) and, for HTTPS, `certs`: the server's "
     "certificate chain as presented, PEM strings, leaf first (also on a reused connection).\n\n"
     "Failures return `nil, message, code` with code `ECONNREFUSED`, `ETIMEDOUT` (the message names "
     "the limit that expired), `ETLS` (handshake or verification failure, the message gives the reason; "
     "also a new HTTPS connection that the server closes right after the handshake, which is how a "
     "TLS 1.3 server rejects a client certificate), `ERESOLVE`, `ECONNRESET` (empty reply or "
     "connection closed by the peer), `ETOOBIG` or `EHTTP` (anything else). An invalid URL, an "
     "unknown option or an option of the wrong type raises. Raises the cancellation value "
     "`kmsrun.core.CANCELLED` (it prints as `cancelled`) if the task is cancelled meanwhile; the "
     "transfer is aborted."},
    {NULL, NULL, NULL, NULL, NULL}};

static const kr_module module = {"kmsrun.http", "HTTP and HTTPS client requests", funcs};

int luaopen_kmsrun_http(lua_State *L)
{
    register_shutdown(L);
    kr_newmodule(L, &module);
    return 1;
}
