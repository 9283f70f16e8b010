/* An HTTP/1.1 server (plain or TLS) on a libevent base, with a plain C
 * interface so that it can be tested without Lua.
 *
 * Each complete request is handed to one callback. The callback owns the
 * request from then on: it may answer at once or much later, after other
 * loop turns. Whatever happens to the client or the server meanwhile, the
 * request handle stays valid until kr_httpd_req_release; answering a request
 * whose connection is gone does nothing. */
#ifndef KMSRUN_HTTP_SERVER_H
#define KMSRUN_HTTP_SERVER_H

#include <event2/event.h>
#include <stddef.h>

typedef struct kr_httpd kr_httpd;
typedef struct kr_httpd_req kr_httpd_req;

typedef struct kr_httpd_config {
    const char *host;           /* address or name to bind, e.g. "127.0.0.1" */
    int port;                   /* 0: any free port (read it back with kr_httpd_port) */
    size_t max_body;            /* larger request bodies get 413, the callback never sees them */
    /* TLS when cert_pem is set. PEM text in memory, with explicit lengths (no NUL needed). */
    const char *cert_pem;       /* leaf certificate, optionally followed by its chain */
    size_t cert_len;
    const char *key_pem;
    size_t key_len;
    const char *client_ca_pem;  /* ask clients for a certificate issued by one of these */
    size_t client_ca_len;
    int require_client_cert;    /* with client_ca_pem: refuse clients that send none */
} kr_httpd_config;

/* Why kr_httpd_listen failed: a message and a stable code ("EADDRINUSE", "EINVAL", ...). */
typedef struct kr_httpd_error {
    char message[512];
    const char *code;
} kr_httpd_error;

typedef void (*kr_httpd_handler)(kr_httpd_req *req, void *arg);

/* Start listening. Returns NULL and fills err on failure. on_request runs
 * from the loop for each request; it may call kr_httpd_close on this server. */
kr_httpd *kr_httpd_listen(struct event_base *base, const kr_httpd_config *cfg,
                          kr_httpd_handler on_request, void *arg, kr_httpd_error *err);

int kr_httpd_port(const kr_httpd *s);
const char *kr_httpd_host(const kr_httpd *s); /* numeric address actually bound */
int kr_httpd_is_tls(const kr_httpd *s);

/* Stop listening, drop every connection and free the server. Requests not
 * yet answered stay valid as handles but can no longer be answered. */
void kr_httpd_close(kr_httpd *s);

/* ---- one request --------------------------------------------------------
 * The accessors read the request as received; they return NULL / 0 once
 * the connection is gone, so copy what is needed during the callback. */

typedef void (*kr_httpd_header_fn)(const char *name, const char *value, void *arg);

int kr_httpd_req_pending(const kr_httpd_req *r); /* not answered and connection alive */
const char *kr_httpd_req_method(const kr_httpd_req *r);
const char *kr_httpd_req_path(const kr_httpd_req *r);  /* without the query, not decoded */
const char *kr_httpd_req_query(const kr_httpd_req *r); /* raw, "" if none */
void kr_httpd_req_headers(const kr_httpd_req *r, kr_httpd_header_fn fn, void *arg);
const char *kr_httpd_req_body(const kr_httpd_req *r, size_t *len);
const char *kr_httpd_req_peer_addr(const kr_httpd_req *r);
int kr_httpd_req_peer_port(const kr_httpd_req *r);
int kr_httpd_req_tls(const kr_httpd_req *r);
/* The client certificate as PEM, or NULL if the client sent none (or not TLS).
 * The string belongs to the request. */
const char *kr_httpd_req_peer_cert(kr_httpd_req *r);

/* Answer with status, body and headers (names[i]: values[i]); Content-Length
 * is always set by the server. Returns 1 if the response was queued, 0 if the
 * connection is gone (nothing is sent), -1 if a header is invalid (nothing
 * is sent, the request stays pending). */
int kr_httpd_respond(kr_httpd_req *r, int status, const char *body, size_t body_len,
                     const char *const *names, const char *const *values, size_t nheaders);

/* Whether a response header may be sent as is: a token name and no CR/LF in the value. */
int kr_httpd_header_valid(const char *name, const char *value);

/* The owner is done with the handle. A request still pending gets a 500. */
void kr_httpd_req_release(kr_httpd_req *r);

#endif
