/* HTTP client transfers on the libevent loop (see http_client.h).
 *
 * libcurl's multi-socket interface tells us which sockets to watch and when
 * its next timeout is due; libevent calls back into curl when either fires,
 * and finished transfers are collected with curl_multi_info_read. Keeping a
 * single multi handle for the process is what makes keep-alive work: its
 * connection cache outlives the easy handle of each request. */
#include "http_client.h"
#include "http_xfer.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KMSRUN_VERSION
#define KMSRUN_VERSION "dev"
#endif

enum { MAX_IDLE_CONNECTIONS = 64 };

typedef struct sock_watch {
    curl_socket_t fd;
    struct event *ev;
    struct sock_watch *prev, *next;
} sock_watch;

static struct {
    CURLM *multi;
    struct event_base *base;
    struct event *timer;
    kr_http_xfer *xfers;         /* in flight */
    sock_watch *watches;
} client;

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
    res->time = kr_xfer_seconds(x->easy, CURLINFO_TOTAL_TIME_T);
    res->reused = connects == 0;
    res->http_version = version_name(version);
    if (rc == CURLE_OK && !x->too_big && !x->no_memory) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res->status);
    } else {
        kr_xfer_classify(x, rc);
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
        kr_http_result_fail(res, "EHTTP", "the http client was shut down: %s", x->url);
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
    SET(CURLOPT_WRITEFUNCTION, kr_xfer_on_body);
    SET(CURLOPT_WRITEDATA, (void *)x);
    SET(CURLOPT_HEADERFUNCTION, kr_xfer_on_header);
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
