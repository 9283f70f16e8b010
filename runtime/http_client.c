/* HTTP client transfers on the libevent loop (see http_client.h).
 *
 * libcurl's multi-socket interface tells us which sockets to watch and when
 * its next timeout is due; libevent calls back into curl when either fires,
 * and finished transfers are collected with curl_multi_info_read. Keeping a
 * single multi handle for the process is what makes keep-alive work: its
 * connection cache outlives the easy handle of each request. */
#include "http_client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef KMSRUN_VERSION
#define KMSRUN_VERSION "dev"
#endif

/* Response headers are not covered by max_body; bound them separately. */
enum { MAX_HEADER_BYTES = 1 << 20, MAX_IDLE_CONNECTIONS = 64 };

typedef struct sock_watch {
    curl_socket_t fd;
    struct event *ev;
    struct sock_watch *prev, *next;
} sock_watch;

struct kr_http_xfer {
    CURL *easy;
    struct curl_slist *headers;
    char *body;                  /* request body: curl reads it in place */
    char *url;
    kr_http_done_fn done;
    void *arg;
    kr_http_result *res;         /* filled while the response arrives */
    size_t body_cap;
    size_t max_body;
    size_t header_bytes;
    size_t headers_cap;
    double timeout, connect_timeout;
    int too_big;                 /* our callbacks stopped the transfer */
    int no_memory;
    int certs_taken;
    int https;
    char errbuf[CURL_ERROR_SIZE];
    kr_http_xfer *prev, *next;
};

static struct {
    CURLM *multi;
    struct event_base *base;
    struct event *timer;
    kr_http_xfer *xfers;         /* in flight */
    sock_watch *watches;
} client;

/* ---- results ------------------------------------------------------------ */

static void free_headers(kr_http_result *res)
{
    for (size_t i = 0; i < res->nheaders; i++) {
        free((char *)res->headers[i].name);
        free((char *)res->headers[i].value);
    }
    free(res->headers);
    res->headers = NULL;
    res->nheaders = 0;
}

static void free_certs(kr_http_result *res)
{
    for (size_t i = 0; i < res->ncerts; i++) free(res->certs[i]);
    free(res->certs);
    res->certs = NULL;
    res->ncerts = 0;
}

void kr_http_result_free(kr_http_result *res)
{
    if (!res) return;
    free(res->message);
    free_headers(res);
    free(res->body);
    free_certs(res);
    free(res);
}

/* Turn res into a failure: only code and message remain. */
static void fail(kr_http_result *res, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(res->message);
    if (vasprintf(&res->message, fmt, ap) < 0) res->message = NULL;
    va_end(ap);
    res->code = code;
    free_headers(res);
    free_certs(res);
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
    res->status = 0;
}

/* ---- response callbacks ------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    kr_http_xfer *x = arg;
    kr_http_result *res = x->res;
    size_t len = size * nmemb;
    if (len > x->max_body - res->body_len) {
        x->too_big = 1;
        return 0;
    }
    if (res->body_len + len > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap * 2 : 16384;
        if (cap < res->body_len + len) cap = res->body_len + len;
        if (cap > x->max_body) cap = x->max_body;
        char *p = realloc(res->body, cap);
        if (!p) {
            x->no_memory = 1;
            return 0;
        }
        res->body = p;
        x->body_cap = cap;
    }
    memcpy(res->body + res->body_len, data, len);
    res->body_len += len;
    return len;
}

static char *pem_of(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    if (bio && PEM_write_bio_X509(bio, cert)) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        if (len > 0) pem = strndup(data, (size_t)len);
    }
    BIO_free(bio);
    return pem;
}

/* The peer chain must be read while the connection is attached to this
 * transfer: that is when the SSL pointer is valid, and it is the only way to
 * see the certificates of a reused connection (CURLOPT_CERTINFO only reports
 * them for new handshakes). */
static void take_certs(kr_http_xfer *x)
{
    struct curl_tlssessioninfo *info = NULL;
    x->certs_taken = 1;
    if (curl_easy_getinfo(x->easy, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || !info) return;
    if (info->backend != CURLSSLBACKEND_OPENSSL || !info->internals) return;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain((SSL *)info->internals);
    int n = chain ? sk_X509_num(chain) : 0;
    if (n <= 0) return;
    kr_http_result *res = x->res;
    res->certs = calloc((size_t)n, sizeof *res->certs);
    if (!res->certs) return;
    for (int i = 0; i < n; i++) {
        char *pem = pem_of(sk_X509_value(chain, i));
        if (pem) res->certs[res->ncerts++] = pem;
    }
}

static char *trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) end--;
    *end = '\0';
    return s;
}

/* Append ", value" (or " value" for a folded line) to an existing value. */
static int append_value(kr_http_header *h, const char *sep, const char *value)
{
    size_t a = strlen(h->value), b = strlen(sep), c = strlen(value);
    char *v = realloc((char *)h->value, a + b + c + 1);
    if (!v) return -1;
    memcpy(v + a, sep, b);
    memcpy(v + a + b, value, c + 1);
    h->value = v;
    return 0;
}

static int add_header(kr_http_xfer *x, char *name, char *value)
{
    kr_http_result *res = x->res;
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    for (size_t i = 0; i < res->nheaders; i++)
        if (strcmp(res->headers[i].name, name) == 0) return append_value(&res->headers[i], ", ", value);
    if (res->nheaders == x->headers_cap) {
        size_t cap = x->headers_cap ? x->headers_cap * 2 : 16;
        kr_http_header *h = realloc(res->headers, cap * sizeof *h);
        if (!h) return -1;
        res->headers = h;
        x->headers_cap = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    res->headers[res->nheaders++] = (kr_http_header){n, v};
    return 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    kr_http_xfer *x = arg;
    size_t len = size * nmemb;
    x->header_bytes += len;
    if (x->header_bytes > MAX_HEADER_BYTES) {
        x->too_big = 1;
        return 0;
    }
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new status line: headers of an interim (1xx) response are dropped. */
        free_headers(x->res);
        x->headers_cap = 0;
        if (!x->certs_taken) take_certs(x);
        return len;
    }
    char *line = strndup(data, len);
    if (!line) {
        x->no_memory = 1;
        return 0;
    }
    int rc = 0;
    char *colon = strchr(line, ':');
    kr_http_result *res = x->res;
    if ((line[0] == ' ' || line[0] == '\t') && res->nheaders > 0) {
        char *v = trim(line, line + len);
        if (*v) rc = append_value(&res->headers[res->nheaders - 1], " ", v);
    } else if (colon && colon > line) {
        char *name = trim(line, colon);
        char *value = trim(colon + 1, line + len);
        rc = add_header(x, name, value);
    }
    free(line);
    if (rc != 0) {
        x->no_memory = 1;
        return 0;
    }
    return len;
}

/* ---- completion --------------------------------------------------------- */

static double seconds(CURL *easy, CURLINFO what)
{
    curl_off_t us = 0;
    curl_easy_getinfo(easy, what, &us);
    return (double)us / 1e6;
}

static int is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return 1;
    default:
        return 0;
    }
}

/* Curl keeps its first error message, which for a connection the peer has
 * already closed is an incidental getpeername() failure: use the error code
 * and errno instead then. */
static void reason(kr_http_xfer *x, CURLcode rc, long oserr, char *buf, size_t len)
{
    if (x->errbuf[0] && strncmp(x->errbuf, "getpeername()", 13) != 0)
        snprintf(buf, len, "%s", x->errbuf);
    else if (oserr)
        snprintf(buf, len, "%s: %s", curl_easy_strerror(rc), strerror((int)oserr));
    else
        snprintf(buf, len, "%s", curl_easy_strerror(rc));
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '.')) buf[--n] = '\0';
}

static void classify(kr_http_xfer *x, CURLcode rc)
{
    kr_http_result *res = x->res;
    long oserr = 0, connects = 0;
    curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
    char why[CURL_ERROR_SIZE + 64];
    reason(x, rc, oserr, why, sizeof why);
    int closed = rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR;

    if (x->too_big) {
        if (x->header_bytes > MAX_HEADER_BYTES)
            fail(res, "ETOOBIG", "response headers larger than %d bytes: %s", MAX_HEADER_BYTES, x->url);
        else
            fail(res, "ETOOBIG", "response body larger than %zu bytes: %s", x->max_body, x->url);
    } else if (x->no_memory) {
        fail(res, "EHTTP", "out of memory: %s", x->url);
    } else if (rc == CURLE_FILESIZE_EXCEEDED) {
        fail(res, "ETOOBIG", "response body larger than %zu bytes: %s", x->max_body, x->url);
    } else if (rc == CURLE_OPERATION_TIMEDOUT || (rc == CURLE_COULDNT_CONNECT && oserr == ETIMEDOUT)) {
        /* Report the limit that applied: the connect one if the transfer
         * ended before the total limit could have been reached. */
        double limit = x->timeout;
        if (x->connect_timeout < x->timeout && seconds(x->easy, CURLINFO_TOTAL_TIME_T) < x->timeout - 0.05)
            limit = x->connect_timeout;
        fail(res, "ETIMEDOUT", "timed out after %g s: %s", limit, x->url);
    } else if (rc == CURLE_COULDNT_CONNECT && (oserr == ECONNREFUSED || oserr == ENOENT)) {
        fail(res, "ECONNREFUSED", "connection refused: %s", x->url);
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY) {
        fail(res, "ERESOLVE", "cannot resolve host (%s): %s", why, x->url);
    } else if (is_tls_error(rc)) {
        fail(res, "ETLS", "tls failure (%s): %s", why, x->url);
    } else if (closed && strstr(why, "alert")) {
        fail(res, "ETLS", "tls failure (%s): %s", why, x->url);
    } else if (closed && x->https && connects > 0 && x->header_bytes == 0) {
        /* With TLS 1.3 the client finishes its handshake before the server
         * has checked the client certificate; a rejection then shows up as a
         * closed connection on the first write or read, its alert unread. */
        fail(res, "ETLS", "tls failure (the server closed the new connection right after the handshake, "
                          "e.g. it rejected the client certificate; %s): %s", why, x->url);
    } else if (rc == CURLE_GOT_NOTHING) {
        fail(res, "ECONNRESET", "empty reply from server: %s", x->url);
    } else if (closed || rc == CURLE_PARTIAL_FILE || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM) {
        fail(res, "ECONNRESET", "connection closed by peer (%s): %s", why, x->url);
    } else {
        fail(res, "EHTTP", "%s: %s", why, x->url);
    }
}

static const char *version_name(long v)
{
    switch (v) {
    case CURL_HTTP_VERSION_1_0: return "1.0";
    case CURL_HTTP_VERSION_1_1: return "1.1";
    case CURL_HTTP_VERSION_2_0: return "2";
    case CURL_HTTP_VERSION_3: return "3";
    default: return NULL;
    }
}

static void unlink_xfer(kr_http_xfer *x)
{
    if (x->prev) x->prev->next = x->next; else client.xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void xfer_free(kr_http_xfer *x)
{
    if (x->easy) {
        curl_multi_remove_handle(client.multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    kr_http_result_free(x->res);
    free(x->body);
    free(x->url);
    free(x);
}

static void complete(kr_http_xfer *x, CURLcode rc)
{
    kr_http_result *res = x->res;
    long connects = 0, version = 0;
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
    res->time = seconds(x->easy, CURLINFO_TOTAL_TIME_T);
    res->reused = connects == 0;
    res->http_version = version_name(version);
    if (rc == CURLE_OK && !x->too_big && !x->no_memory) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res->status);
    } else {
        classify(x, rc);
    }
    x->res = NULL;
    kr_http_done_fn done = x->done;
    void *arg = x->arg;
    unlink_xfer(x);
    xfer_free(x);
    done(res, arg);
}

static void collect_done(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(client.multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        /* msg does not survive removing the handle: copy what we need. */
        CURLcode rc = msg->data.result;
        kr_http_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) complete(x, rc);
    }
}

/* ---- loop integration --------------------------------------------------- */

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)arg;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(client.multi, fd, flags, &running);
    collect_done();
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    int running;
    curl_multi_socket_action(client.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done();
}

static void watch_free(sock_watch *w)
{
    if (w->prev) w->prev->next = w->next; else client.watches = w->next;
    if (w->next) w->next->prev = w->prev;
    if (w->ev) event_free(w->ev);
    free(w);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy; (void)userp;
    sock_watch *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) watch_free(w);
        return 0;
    }
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) return -1;
        w->fd = fd;
        w->next = client.watches;
        if (client.watches) client.watches->prev = w;
        client.watches = w;
        curl_multi_assign(client.multi, fd, w);
    } else if (w->ev) {
        event_free(w->ev);
    }
    short events = EV_PERSIST;
    if (what & CURL_POLL_IN) events |= EV_READ;
    if (what & CURL_POLL_OUT) events |= EV_WRITE;
    w->ev = event_new(client.base, fd, events, on_event, NULL);
    if (!w->ev || event_add(w->ev, NULL) != 0) return -1;
    return 0;
}

static int on_timer_change(CURLM *multi, long ms, void *userp)
{
    (void)multi; (void)userp;
    if (ms < 0) {
        evtimer_del(client.timer);
        return 0;
    }
    /* Never drive curl from inside its own callback: a zero timeout runs on
     * the next loop turn. */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return evtimer_add(client.timer, &tv) == 0 ? 0 : -1;
}

static int client_init(struct event_base *base)
{
    if (client.multi) return client.base == base ? 0 : -1;
    client.multi = curl_multi_init();
    client.timer = evtimer_new(base, on_timeout, NULL);
    if (!client.multi || !client.timer) {
        if (client.multi) curl_multi_cleanup(client.multi);
        if (client.timer) event_free(client.timer);
        memset(&client, 0, sizeof client);
        return -1;
    }
    client.base = base;
    curl_multi_setopt(client.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(client.multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    /* By default the cache only holds 4 idle connections per transfer in
     * flight, so a run talking to a few servers in turn would lose them. */
    curl_multi_setopt(client.multi, CURLMOPT_MAXCONNECTS, (long)MAX_IDLE_CONNECTIONS);
    return 0;
}

void kr_http_shutdown(void)
{
    if (!client.multi) return;
    /* Completing (rather than silently dropping) what is still in flight
     * lets its owner release its own state, whatever the shutdown order. */
    while (client.xfers) {
        kr_http_xfer *x = client.xfers;
        kr_http_result *res = x->res;
        x->res = NULL;
        fail(res, "EHTTP", "the http client was shut down: %s", x->url);
        kr_http_done_fn done = x->done;
        void *arg = x->arg;
        unlink_xfer(x);
        xfer_free(x);
        done(res, arg);
    }
    /* Closing the cached connections may still call on_socket/on_timer_change. */
    curl_multi_cleanup(client.multi);
    client.multi = NULL;
    while (client.watches) watch_free(client.watches);
    event_free(client.timer);
    memset(&client, 0, sizeof client);
}

void kr_http_abort(kr_http_xfer *x)
{
    if (!x) return;
    unlink_xfer(x);
    xfer_free(x);
}

/* ---- starting a transfer ------------------------------------------------ */

int kr_http_check_url(const char *url, char *err, size_t errlen)
{
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "unsupported url '%s': it must start with http:// or https://", url);
        return -1;
    }
    CURLU *u = curl_url();
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    curl_url_cleanup(u);
    if (rc != CURLUE_OK) {
        snprintf(err, errlen, "invalid url '%s': %s", url, curl_url_strerror(rc));
        return -1;
    }
    return 0;
}

static int has_header(const kr_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return 1;
    return 0;
}

static int add_line(kr_http_xfer *x, const char *name, const char *value)
{
    char *line;
    /* curl sends "Name;" as an empty header; "Name:" would remove it. */
    int n = value ? (*value ? asprintf(&line, "%s: %s", name, value) : asprintf(&line, "%s;", name))
                  : asprintf(&line, "%s:", name);
    if (n < 0) return -1;
    struct curl_slist *l = curl_slist_append(x->headers, line);
    free(line);
    if (!l) return -1;
    x->headers = l;
    return 0;
}

static int build_headers(kr_http_xfer *x, const kr_http_request *req)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (add_line(x, req->headers[i].name, req->headers[i].value) != 0) return -1;
    /* Send exactly what the caller asked for: no form content type on a raw
     * body, no 100-continue round trip on large ones. */
    if (x->body && !has_header(req, "content-type") && add_line(x, "Content-Type", NULL) != 0) return -1;
    if (!has_header(req, "expect") && add_line(x, "Expect", NULL) != 0) return -1;
    return 0;
}

static int wants_body(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
}

#define SET(opt, val)                                                                 \
    do {                                                                              \
        CURLcode rc_ = curl_easy_setopt(e, opt, val);                                 \
        if (rc_ != CURLE_OK) {                                                        \
            snprintf(err, errlen, "cannot set %s: %s", #opt, curl_easy_strerror(rc_)); \
            return -1;                                                                \
        }                                                                             \
    } while (0)

static int set_tls(CURL *e, const kr_http_request *req, char *err, size_t errlen)
{
    SET(CURLOPT_SSL_VERIFYPEER, req->insecure ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, (req->insecure || !req->verify_host) ? 0L : 2L);
    if (req->ca_pem) {
        struct curl_blob ca = {(void *)req->ca_pem, req->ca_len, CURL_BLOB_COPY};
        /* Pinning: the blob replaces the CA file; the CA directory must go too. */
        SET(CURLOPT_CAINFO_BLOB, &ca);
        SET(CURLOPT_CAINFO, (char *)NULL);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    if (req->cert_pem) {
        struct curl_blob cert = {(void *)req->cert_pem, req->cert_len, CURL_BLOB_COPY};
        struct curl_blob key = {(void *)req->key_pem, req->key_len, CURL_BLOB_COPY};
        SET(CURLOPT_SSLCERT_BLOB, &cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY_BLOB, &key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    return 0;
}

static int setup(kr_http_xfer *x, const kr_http_request *req, char *err, size_t errlen)
{
    CURL *e = x->easy;
    const char *method = req->method ? req->method : "GET";
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (char *)x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    /* Requests go exactly where the URL says: environment proxies are ignored. */
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_USERAGENT, "kmsrun/" KMSRUN_VERSION);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x);
    SET(CURLOPT_TIMEOUT_MS, (long)(req->timeout * 1000 + 0.5));
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(req->connect_timeout * 1000 + 0.5));
    if (req->max_body > 0) SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);
    if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (req->body || wants_body(method)) {
            size_t len = req->body ? req->body_len : 0;
            x->body = malloc(len + 1);
            if (!x->body) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            if (len) memcpy(x->body, req->body, len);
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            SET(CURLOPT_POSTFIELDS, x->body);
        }
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (build_headers(x, req) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    SET(CURLOPT_HTTPHEADER, x->headers);
    if (req->unix_socket) SET(CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
    if (req->fresh) SET(CURLOPT_FRESH_CONNECT, 1L);
    return set_tls(e, req, err, errlen);
}

#undef SET

kr_http_xfer *kr_http_start(struct event_base *base, const kr_http_request *req,
                            kr_http_done_fn done, void *arg, char *err, size_t errlen)
{
    if (client_init(base) != 0) {
        snprintf(err, errlen, "cannot set up the http client on this event loop");
        return NULL;
    }
    kr_http_xfer *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->done = done;
    x->arg = arg;
    x->max_body = req->max_body;
    x->timeout = req->timeout;
    x->connect_timeout = req->connect_timeout;
    x->url = strdup(req->url);
    x->https = strncasecmp(req->url, "https:", 6) == 0;
    x->res = calloc(1, sizeof *x->res);
    x->easy = curl_easy_init();
    if (!x->url || !x->res || !x->easy) {
        snprintf(err, errlen, "out of memory");
        xfer_free(x);
        return NULL;
    }
    if (setup(x, req, err, errlen) != 0) {
        xfer_free(x);
        return NULL;
    }
    CURLMcode mc = curl_multi_add_handle(client.multi, x->easy);
    if (mc != CURLM_OK) {
        snprintf(err, errlen, "cannot start the transfer: %s", curl_multi_strerror(mc));
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        xfer_free(x);
        return NULL;
    }
    x->next = client.xfers;
    if (client.xfers) client.xfers->prev = x;
    client.xfers = x;
    return x;
}
