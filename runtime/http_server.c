/* HTTP(S) server on evhttp; see http_server.h.
 *
 * Ownership: evhttp owns connections and their evhttp_request; the callback's
 * owner holds a kr_httpd_req that points at the evhttp_request only while it
 * can still be answered. The connection's close callback is how we learn that
 * evhttp is about to free the request (client gone, server closed): it clears
 * the pointer, so a late answer becomes a no-op instead of a use after free.
 * evhttp reads nothing more on a connection until its request is answered,
 * so a connection has at most one request in our hands at a time. */
#include "http_server.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Far above any real request head; it only bounds what a broken client can make us buffer. */
enum { MAX_HEADERS_SIZE = 256 * 1024 };

struct kr_httpd {
    struct evhttp *http;
    SSL_CTX *ctx;            /* NULL for plain HTTP */
    kr_httpd_handler on_request;
    void *arg;
    char host[NI_MAXHOST];
    int port;
    struct evconnlistener *listener;
    struct event *resume;    /* re-enables accepting after a pause for EMFILE */
    int accept_warned;       /* each kind of accept failure is said once */
};

struct kr_httpd_req {
    struct evhttp_request *ev;      /* NULL once answered or its connection is gone */
    struct evhttp_connection *conn;
    int tls;
    int peer_cert_read;
    char *peer_cert;                /* cached PEM */
};

static void fail(kr_httpd_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    kr_httpd *s = arg;
    evconnlistener_enable(s->listener);
}

/* Without this callback libevent logs every failed accept() and, the socket
 * staying readable, retries at once: out of file descriptors, 138 MB of
 * "Error from accept() call" in 30 s. Instead: said once, accepting paused for
 * 100 ms (the connection waits in the backlog), then tried again. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    kr_httpd *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    int resources = e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
    int bit = resources ? 1 : 2;
    if (!(s->accept_warned & bit)) {
        s->accept_warned |= bit;
        fprintf(stderr, "kmsrun: HTTP server on %s:%d cannot accept a connection: %s%s (said once)\n", s->host, s->port,
                evutil_socket_error_to_string(e),
                resources ? "; out of file descriptors or memory: accepting is paused and retried every 100 ms" : "");
    }
    if (resources && s->resume) {
        struct timeval tv = {0, 100000};
        evconnlistener_disable(lev);
        evtimer_add(s->resume, &tv);
    }
}

static void fail(kr_httpd_error *err, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->code = code;
}

/* Appends OpenSSL's most specific reason, so "bad PEM" says what was wrong. */
static void fail_ssl(kr_httpd_error *err, const char *what)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0) last = e;
    const char *reason = last ? ERR_reason_error_string(last) : NULL;
    if (reason) fail(err, "EINVAL", "%s: %s", what, reason);
    else fail(err, "EINVAL", "%s", what);
}

/* ---- TLS context --------------------------------------------------------- */

/* An encrypted key must fail rather than prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

static int load_cert_chain(SSL_CTX *ctx, const char *pem, size_t len, kr_httpd_error *err)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *leaf = b ? PEM_read_bio_X509(b, NULL, no_password, NULL) : NULL;
    if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
        X509_free(leaf);
        BIO_free(b);
        fail_ssl(err, "tls.cert: no usable certificate in the PEM text");
        return -1;
    }
    X509_free(leaf);
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            BIO_free(b);
            fail_ssl(err, "tls.cert: cannot add a chain certificate");
            return -1;
        }
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(b);
    return 0;
}

static int load_key(SSL_CTX *ctx, const char *pem, size_t len, kr_httpd_error *err)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    if (!key) {
        fail_ssl(err, "tls.key: no usable private key in the PEM text");
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        ERR_clear_error();
        fail(err, "EINVAL", "tls.key does not match tls.cert");
        return -1;
    }
    return 0;
}

static int load_client_ca(SSL_CTX *ctx, const char *pem, size_t len, kr_httpd_error *err)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        /* The store verifies; the CA list tells the client which certificate to pick. */
        int ok = X509_STORE_add_cert(store, x) == 1 && SSL_CTX_add_client_CA(ctx, x) == 1;
        X509_free(x);
        if (!ok) {
            BIO_free(b);
            fail_ssl(err, "tls.client_ca: cannot use a certificate");
            return -1;
        }
        n++;
    }
    BIO_free(b);
    if (n == 0) {
        fail_ssl(err, "tls.client_ca: no certificate in the PEM text");
        return -1;
    }
    ERR_clear_error();
    return 0;
}

static SSL_CTX *make_tls_context(const kr_httpd_config *cfg, kr_httpd_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fail_ssl(err, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (load_cert_chain(ctx, cfg->cert_pem, cfg->cert_len, err) != 0) goto bad;
    if (!cfg->key_pem) {
        fail(err, "EINVAL", "tls.key is required with tls.cert");
        goto bad;
    }
    if (load_key(ctx, cfg->key_pem, cfg->key_len, err) != 0) goto bad;
    if (cfg->client_ca_pem) {
        if (load_client_ca(ctx, cfg->client_ca_pem, cfg->client_ca_len, err) != 0) goto bad;
        int mode = SSL_VERIFY_PEER;
        if (cfg->require_client_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        /* Session resumption with peer verification fails without one. */
        static const unsigned char sid_ctx[] = "kmsrun.httpd";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    }
    return ctx;
bad:
    SSL_CTX_free(ctx);
    return NULL;
}

static struct bufferevent *make_tls_bufferevent(struct event_base *base, void *arg)
{
    kr_httpd *s = arg;
    SSL *ssl = SSL_new(s->ctx);
    if (!ssl) return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl); /* libevent leaves it to us on failure */
        return NULL;
    }
    /* Clients often close without close_notify; that is not an error worth failing a reply for. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* ---- listening socket ---------------------------------------------------- */

static void fail_errno(kr_httpd_error *err, int e, const char *host, int port)
{
    const char *code = strerrorname_np(e);
    char msg[128];
    snprintf(msg, sizeof msg, "%s", strerror(e));
    msg[0] = (char)tolower((unsigned char)msg[0]);
    fail(err, code ? code : "EIO", "cannot listen on %s:%d: %s", host, port, msg);
}

/* A listening socket of our own rather than evhttp_bind_socket: we want the
 * precise errno (EADDRINUSE) and SO_REUSEADDR so a port can be reused at once. */
static evutil_socket_t open_listener(kr_httpd *s, const char *host, int port, kr_httpd_error *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s", gai_strerror(rc));
        msg[0] = (char)tolower((unsigned char)msg[0]);
        fail(err, "EADDRNOTAVAIL", "cannot listen on %s:%d: %s", host, port, msg);
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* Inherited by accepted sockets on Linux. Without it a TLS reply written
         * as several records waits on the peer's delayed ACK: ~40 ms a request. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fail_errno(err, e, host, port);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char serv[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, s->host, sizeof s->host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        fail_errno(err, errno ? errno : EINVAL, host, port);
        close(fd);
        return -1;
    }
    s->port = atoi(serv);
    return fd;
}

/* ---- requests ------------------------------------------------------------ */

static void on_connection_closed(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    kr_httpd_req *r = arg;
    /* evhttp detaches (and stops owning) a request it has not seen answered
     * when the client drops; every other request is freed with the connection. */
    if (r->ev && !evhttp_request_get_connection(r->ev)) evhttp_request_free(r->ev);
    r->ev = NULL;
    r->conn = NULL;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    kr_httpd *s = arg;
    kr_httpd_req *r = calloc(1, sizeof *r);
    if (!r) {
        evhttp_send_error(ev, HTTP_SERVUNAVAIL, NULL);
        return;
    }
    r->ev = ev;
    r->conn = evhttp_request_get_connection(ev);
    r->tls = s->ctx != NULL;
    evhttp_connection_set_closecb(r->conn, on_connection_closed, r);
    /* s may be closed by the callback: do not touch it afterwards. */
    s->on_request(r, s->arg);
}

int kr_httpd_req_pending(const kr_httpd_req *r) { return r->ev != NULL; }

const char *kr_httpd_req_method(const kr_httpd_req *r)
{
    if (!r->ev) return NULL;
    switch (evhttp_request_get_command(r->ev)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

const char *kr_httpd_req_path(const kr_httpd_req *r)
{
    if (!r->ev) return NULL;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->ev);
    const char *p = u ? evhttp_uri_get_path(u) : NULL;
    return p && *p ? p : "/";
}

const char *kr_httpd_req_query(const kr_httpd_req *r)
{
    if (!r->ev) return NULL;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->ev);
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    return q ? q : "";
}

void kr_httpd_req_headers(const kr_httpd_req *r, kr_httpd_header_fn fn, void *arg)
{
    if (!r->ev) return;
    struct evkeyvalq *q = evhttp_request_get_input_headers(r->ev);
    for (struct evkeyval *h = q->tqh_first; h; h = h->next.tqe_next) fn(h->key, h->value, arg);
}

const char *kr_httpd_req_body(const kr_httpd_req *r, size_t *len)
{
    *len = 0;
    if (!r->ev) return NULL;
    struct evbuffer *b = evhttp_request_get_input_buffer(r->ev);
    *len = evbuffer_get_length(b);
    if (*len == 0) return "";
    return (const char *)evbuffer_pullup(b, -1);
}

const char *kr_httpd_req_peer_addr(const kr_httpd_req *r)
{
    if (!r->conn) return NULL;
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(r->conn, &addr, &port);
    return addr;
}

int kr_httpd_req_peer_port(const kr_httpd_req *r)
{
    if (!r->conn) return 0;
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(r->conn, &addr, &port);
    return port;
}

int kr_httpd_req_tls(const kr_httpd_req *r) { return r->tls; }

const char *kr_httpd_req_peer_cert(kr_httpd_req *r)
{
    if (r->peer_cert_read || !r->conn || !r->tls) return r->peer_cert;
    r->peer_cert_read = 1;
    SSL *ssl = bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(r->conn));
    X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    if (!x) return NULL;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && PEM_write_bio_X509(b, x) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        r->peer_cert = malloc((size_t)n + 1);
        if (r->peer_cert) {
            memcpy(r->peer_cert, data, (size_t)n);
            r->peer_cert[n] = '\0';
        }
    }
    BIO_free(b);
    X509_free(x);
    return r->peer_cert;
}

/* RFC 9110 token characters: a name outside them could smuggle a header. */
static int valid_header_name(const char *s)
{
    if (!s) return 0;
    if (!*s) return 0;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) &&
            !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

static int valid_header_value(const char *s)
{
    return s && strpbrk(s, "\r\n") == NULL;
}

int kr_httpd_header_valid(const char *name, const char *value)
{
    return valid_header_name(name) && valid_header_value(value);
}

int kr_httpd_respond(kr_httpd_req *r, int status, const char *body, size_t body_len,
                     const char *const *names, const char *const *values, size_t nheaders)
{
    for (size_t i = 0; i < nheaders; i++)
        if (!kr_httpd_header_valid(names[i], values[i])) return -1;
    if (!r->ev) return 0;
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->ev);
    for (size_t i = 0; i < nheaders; i++) {
        /* The server frames the body itself. */
        if (strcasecmp(names[i], "Content-Length") == 0 || strcasecmp(names[i], "Transfer-Encoding") == 0)
            continue;
        evhttp_add_header(out, names[i], values[i]);
    }
    /* 1xx, 204 and 304 carry no body; HEAD gets the length but not the bytes
     * (evhttp would otherwise send the bytes after a HEAD response). */
    int bodyless = status < 200 || status == 204 || status == 304;
    if (!bodyless) {
        char len[32];
        snprintf(len, sizeof len, "%zu", body_len);
        evhttp_add_header(out, "Content-Length", len);
        if (evhttp_request_get_command(r->ev) != EVHTTP_REQ_HEAD && body_len)
            evbuffer_add(evhttp_request_get_output_buffer(r->ev), body, body_len);
    }
    evhttp_connection_set_closecb(r->conn, NULL, NULL);
    evhttp_send_reply(r->ev, status, NULL, NULL);
    r->ev = NULL;
    r->conn = NULL;
    return 1;
}

void kr_httpd_req_release(kr_httpd_req *r)
{
    if (!r) return;
    if (r->ev) {
        static const char msg[] = "the request was dropped without a response\n";
        kr_httpd_respond(r, 500, msg, sizeof msg - 1, NULL, NULL, 0);
    }
    free(r->peer_cert);
    free(r);
}

/* ---- server -------------------------------------------------------------- */

kr_httpd *kr_httpd_listen(struct event_base *base, const kr_httpd_config *cfg,
                          kr_httpd_handler handler, void *arg, kr_httpd_error *err)
{
    kr_httpd *s = calloc(1, sizeof *s);
    if (!s) {
        fail(err, "ENOMEM", "out of memory");
        return NULL;
    }
    s->on_request = handler;
    s->arg = arg;
    /* libevent and OpenSSL write to sockets without MSG_NOSIGNAL: a client that
     * hangs up before its response must not kill the process (children get
     * the default back in proc.c). */
    signal(SIGPIPE, SIG_IGN);
    if (cfg->cert_pem && !(s->ctx = make_tls_context(cfg, err))) goto bad;
    if (!cfg->cert_pem && (cfg->key_pem || cfg->client_ca_pem)) {
        fail(err, "EINVAL", "tls.key and tls.client_ca need tls.cert");
        goto bad;
    }
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    evutil_socket_t fd = open_listener(s, host, cfg->port, err);
    if (fd < 0) goto bad;
    s->http = evhttp_new(base);
    struct evhttp_bound_socket *bound = s->http ? evhttp_accept_socket_with_handle(s->http, fd) : NULL;
    if (!bound) {
        close(fd);
        fail(err, "ENOMEM", "cannot set up the HTTP server");
        goto bad;
    }
    s->listener = evhttp_bound_socket_get_listener(bound);
    s->resume = evtimer_new(base, resume_accepting, s);
    if (s->listener) evconnlistener_set_error_cb(s->listener, on_accept_error);
    evhttp_set_gencb(s->http, on_request, s);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->max_body);
    evhttp_set_max_headers_size(s->http, MAX_HEADERS_SIZE);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    /* No invented Content-Type: the handler says what it sends. */
    evhttp_set_default_content_type(s->http, NULL);
    if (s->ctx) evhttp_set_bevcb(s->http, make_tls_bufferevent, s);
    return s;
bad:
    if (s->resume) event_free(s->resume);
    if (s->http) evhttp_free(s->http);
    SSL_CTX_free(s->ctx);
    free(s);
    return NULL;
}

int kr_httpd_port(const kr_httpd *s) { return s->port; }
const char *kr_httpd_host(const kr_httpd *s) { return s->host; }
int kr_httpd_is_tls(const kr_httpd *s) { return s->ctx != NULL; }

void kr_httpd_close(kr_httpd *s)
{
    if (!s) return;
    if (s->resume) event_free(s->resume);
    evhttp_free(s->http); /* the listener, then every connection (close callbacks run) */
    SSL_CTX_free(s->ctx);
    free(s);
}
