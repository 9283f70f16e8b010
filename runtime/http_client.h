/* HTTP client transfers driven by the event loop of task.c.
 *
 * One libcurl multi handle serves the whole process, so connections are kept
 * alive and reused between requests to the same peer. A transfer is started
 * with a request description, runs while the loop runs, and ends with exactly
 * one call of its completion callback, unless it is aborted first.
 *
 * Plain C: no Lua here. The binding (l_http.c) maps results to Lua values. */
#ifndef KMSRUN_HTTP_CLIENT_H
#define KMSRUN_HTTP_CLIENT_H

#include <stddef.h>

struct event_base;

typedef struct kr_http_header {
    const char *name;
    const char *value;
} kr_http_header;

/* Everything is copied by kr_http_start; the caller may free it right after. */
typedef struct kr_http_request {
    const char *url;
    const char *method;           /* NULL: GET */
    const kr_http_header *headers;
    size_t nheaders;
    const char *body;             /* NULL: no request body */
    size_t body_len;
    double timeout;               /* whole transfer, seconds */
    double connect_timeout;       /* seconds */
    const char *ca_pem;           /* NULL: the system trust store */
    size_t ca_len;
    const char *cert_pem;         /* client certificate (chain), with key_pem */
    size_t cert_len;
    const char *key_pem;
    size_t key_len;
    int insecure;                 /* no peer verification at all */
    int verify_host;              /* check the name in the peer certificate */
    const char *unix_socket;      /* NULL: TCP */
    size_t max_body;              /* response bytes kept before failing with ETOOBIG */
    int fresh;                    /* do not reuse a kept-alive connection */
} kr_http_request;

typedef struct kr_http_result {
    /* Failure: code is a stable upper-case string ("ECONNREFUSED", "ETIMEDOUT",
     * "ETLS", "ERESOLVE", "ECONNRESET", "ETOOBIG", "EHTTP") and message says
     * what happened, without a module prefix. Success: code is NULL. */
    const char *code;
    char *message;
    long status;
    kr_http_header *headers;      /* lowercase names, repeated ones joined with ", " */
    size_t nheaders;
    char *body;                   /* also for 4xx/5xx */
    size_t body_len;
    double time;                  /* seconds from start to the end of the transfer */
    int reused;                   /* no new connection was made */
    char **certs;                 /* PEM, peer chain as presented, leaf first */
    size_t ncerts;
    const char *http_version;     /* "1.0", "1.1", "2", "3" */
} kr_http_result;

typedef struct kr_http_xfer kr_http_xfer;

/* Called once from the loop; the callee owns res (kr_http_result_free). */
typedef void (*kr_http_done_fn)(kr_http_result *res, void *arg);

/* Check that url is an absolute http:// or https:// URL. Returns 0, or -1
 * with a lowercase reason in err. */
int kr_http_check_url(const char *url, char *err, size_t errlen);

/* Start a transfer on base, the loop that will drive it. Every transfer of
 * the process must use the same base until kr_http_shutdown. Returns NULL
 * with a lowercase reason in err if it cannot start. */
kr_http_xfer *kr_http_start(struct event_base *base, const kr_http_request *req,
                            kr_http_done_fn done, void *arg, char *err, size_t errlen);

/* Abort a transfer whose callback has not run yet; the callback never runs. */
void kr_http_abort(kr_http_xfer *x);

void kr_http_result_free(kr_http_result *res);

/* Complete what is still in flight with EHTTP (callbacks must not start new
 * transfers then), close kept-alive connections and release the multi
 * handle. Idempotent; call it before the event base is freed. */
void kr_http_shutdown(void);

#endif
