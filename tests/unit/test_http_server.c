/* http_server.c without Lua: raw sockets (plain HTTP) and an OpenSSL client
 * thread (TLS) against a server on a private event base, loopback only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { ECHO, HOLD, CLOSE_IN_HANDLER };

typedef struct {
    struct event_base *base;
    kr_httpd *srv;
    enum mode mode;
    int calls;
    kr_httpd_req *held;
    char peer_cert[4096]; /* what the last request saw, "" if none */
    int respond_rc;
} fixture;

struct find {
    const char *want;
    char out[128];
};

static void find_header(const char *name, const char *value, void *arg)
{
    struct find *f = arg;
    if (strcasecmp(name, f->want) == 0) snprintf(f->out, sizeof f->out, "%s", value);
}

static void on_request(kr_httpd_req *r, void *arg)
{
    fixture *fx = arg;
    fx->calls++;
    const char *pc = kr_httpd_req_peer_cert(r);
    snprintf(fx->peer_cert, sizeof fx->peer_cert, "%s", pc ? pc : "");
    if (fx->mode == HOLD) {
        fx->held = r;
        return;
    }
    if (fx->mode == CLOSE_IN_HANDLER) {
        kr_httpd_close(fx->srv);
        fx->srv = NULL;
        fx->respond_rc = kr_httpd_respond(r, 200, "late", 4, NULL, NULL, 0);
        kr_httpd_req_release(r);
        return;
    }
    /* Echo what the server parsed, so the client side can check it. */
    struct find f = {"x-test", ""};
    kr_httpd_req_headers(r, find_header, &f);
    size_t blen;
    const char *body = kr_httpd_req_body(r, &blen);
    char out[1024];
    int n = snprintf(out, sizeof out, "%s %s ?%s x-test=%s body=%.*s peer=%s tls=%d", kr_httpd_req_method(r),
                     kr_httpd_req_path(r), kr_httpd_req_query(r), f.out, (int)blen, body,
                     kr_httpd_req_peer_addr(r), kr_httpd_req_tls(r));
    const char *names[] = {"X-Reply", "Content-Length"};
    const char *values[] = {"yes", "999"}; /* the server's own length wins */
    fx->respond_rc = kr_httpd_respond(r, 200, out, (size_t)n, names, values, 2);
    kr_httpd_req_release(r);
}

static kr_httpd_config plain_config(int port)
{
    kr_httpd_config c = {0};
    c.host = "127.0.0.1";
    c.port = port;
    c.max_body = 1 << 20;
    return c;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->base = event_base_new();
    kr_httpd_config c = plain_config(0);
    kr_httpd_error err;
    fx->srv = kr_httpd_listen(fx->base, &c, on_request, fx, &err);
    assert_non_null(fx->srv);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    kr_httpd_close(fx->srv);
    if (fx->held) kr_httpd_req_release(fx->held);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

/* Run the loop for a while (the server needs turns to accept, read and write). */
static void pump(fixture *fx, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(fx->base, &tv);
    event_base_dispatch(fx->base);
}

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Read one response while pumping the loop: headers, then Content-Length
 * bytes (none for HEAD). Returns the length read, 0 on EOF before anything. */
static size_t read_response(fixture *fx, int fd, char *buf, size_t size, int head)
{
    size_t len = 0;
    for (int i = 0; i < 500; i++) {
        pump(fx, 5);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5) <= 0) continue;
        ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        const char *cl = strcasestr(buf, "Content-Length: ");
        size_t want = head || !cl ? 0 : (size_t)atoi(cl + 16);
        if (len >= (size_t)(end + 4 - buf) + want) break;
    }
    buf[len] = '\0';
    return len;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

static void test_listen_port_zero(void **state)
{
    fixture *fx = *state;
    assert_true(kr_httpd_port(fx->srv) > 0);
    assert_string_equal(kr_httpd_host(fx->srv), "127.0.0.1");
    assert_false(kr_httpd_is_tls(fx->srv));
}

static void test_get_with_query_and_header(void **state)
{
    fixture *fx = *state;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: t\r\nX-Test: hello\r\n\r\n");
    char buf[4096];
    read_response(fx, fd, buf, sizeof buf, 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(buf, "X-Reply: yes\r\n"));
    assert_null(strstr(buf, "999"));
    assert_string_equal(body_of(buf), "GET /a/b ?x=1&y=2 x-test=hello body= peer=127.0.0.1 tls=0");
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(body_of(buf)));
    assert_non_null(strstr(buf, cl));
    assert_int_equal(fx->respond_rc, 1);
    close(fd);
}

static void test_post_body_keep_alive(void **state)
{
    fixture *fx = *state;
    int fd = client_connect(kr_httpd_port(fx->srv));
    char buf[4096];
    send_str(fd, "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    read_response(fx, fd, buf, sizeof buf, 0);
    assert_string_equal(body_of(buf), "POST /p ? x-test= body=hello peer=127.0.0.1 tls=0");
    send_str(fd, "GET /second HTTP/1.1\r\nHost: t\r\n\r\n");
    read_response(fx, fd, buf, sizeof buf, 0);
    assert_string_equal(body_of(buf), "GET /second ? x-test= body= peer=127.0.0.1 tls=0");
    assert_int_equal(fx->calls, 2);
    close(fd);
}

static void test_head_has_length_but_no_body(void **state)
{
    fixture *fx = *state;
    int fd = client_connect(kr_httpd_port(fx->srv));
    char buf[4096];
    send_str(fd, "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
    read_response(fx, fd, buf, sizeof buf, 1);
    assert_non_null(strstr(buf, "Content-Length: "));
    pump(fx, 50);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 50), 0);
    assert_string_equal(body_of(buf), "");
    close(fd);
}

static void test_respond_later(void **state)
{
    fixture *fx = *state;
    fx->mode = HOLD;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !fx->held; i++) pump(fx, 5);
    assert_non_null(fx->held);
    assert_true(kr_httpd_req_pending(fx->held));
    pump(fx, 20);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 0); /* nothing sent before the answer */
    assert_int_equal(kr_httpd_respond(fx->held, 202, "done", 4, NULL, NULL, 0), 1);
    assert_false(kr_httpd_req_pending(fx->held));
    kr_httpd_req_release(fx->held);
    fx->held = NULL;
    char buf[4096];
    read_response(fx, fd, buf, sizeof buf, 0);
    assert_non_null(strstr(buf, "HTTP/1.1 202 Accepted\r\n"));
    assert_string_equal(body_of(buf), "done");
    close(fd);
}

static void test_client_gone_before_answer(void **state)
{
    fixture *fx = *state;
    fx->mode = HOLD;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /gone HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !fx->held; i++) pump(fx, 5);
    assert_non_null(fx->held);
    close(fd);
    pump(fx, 20);
    /* Either the server noticed (0) or the write fails later (1); both are harmless. */
    assert_true(kr_httpd_respond(fx->held, 200, "x", 1, NULL, NULL, 0) >= 0);
    kr_httpd_req_release(fx->held);
    fx->held = NULL;
    pump(fx, 50);
}

static void test_close_with_request_pending(void **state)
{
    fixture *fx = *state;
    fx->mode = HOLD;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /pending HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !fx->held; i++) pump(fx, 5);
    assert_non_null(fx->held);
    kr_httpd_close(fx->srv);
    fx->srv = NULL;
    assert_false(kr_httpd_req_pending(fx->held));
    assert_null(kr_httpd_req_method(fx->held));
    assert_int_equal(kr_httpd_respond(fx->held, 200, "x", 1, NULL, NULL, 0), 0);
    kr_httpd_req_release(fx->held);
    fx->held = NULL;
    char buf[256];
    assert_int_equal(read_response(fx, fd, buf, sizeof buf, 0), 0); /* EOF, no response */
    close(fd);
}

static void test_close_from_the_handler(void **state)
{
    fixture *fx = *state;
    fx->mode = CLOSE_IN_HANDLER;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /close HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && fx->srv; i++) pump(fx, 5);
    assert_null(fx->srv);
    assert_int_equal(fx->respond_rc, 0);
    pump(fx, 20);
    close(fd);
}

static void test_released_unanswered_gets_500(void **state)
{
    fixture *fx = *state;
    fx->mode = HOLD;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /drop HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !fx->held; i++) pump(fx, 5);
    kr_httpd_req_release(fx->held);
    fx->held = NULL;
    char buf[4096];
    read_response(fx, fd, buf, sizeof buf, 0);
    assert_non_null(strstr(buf, "HTTP/1.1 500 "));
    close(fd);
}

static void test_invalid_header_is_refused(void **state)
{
    fixture *fx = *state;
    fx->mode = HOLD;
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "GET /h HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !fx->held; i++) pump(fx, 5);
    const char *names[] = {"X-Bad"}, *values[] = {"a\r\nInjected: 1"};
    assert_int_equal(kr_httpd_respond(fx->held, 200, "", 0, names, values, 1), -1);
    const char *names2[] = {"Bad Name"}, *values2[] = {"v"};
    assert_int_equal(kr_httpd_respond(fx->held, 200, "", 0, names2, values2, 1), -1);
    assert_true(kr_httpd_req_pending(fx->held));
    assert_int_equal(kr_httpd_respond(fx->held, 204, "ignored", 7, NULL, NULL, 0), 1);
    kr_httpd_req_release(fx->held);
    fx->held = NULL;
    char buf[4096];
    read_response(fx, fd, buf, sizeof buf, 1);
    assert_non_null(strstr(buf, "HTTP/1.1 204 No Content\r\n"));
    assert_null(strstr(buf, "Injected"));
    assert_null(strstr(buf, "Content-Length"));
    close(fd);
}

static void test_max_body_413(void **state)
{
    fixture *fx = *state;
    kr_httpd_close(fx->srv);
    kr_httpd_config c = plain_config(0);
    c.max_body = 10;
    kr_httpd_error err;
    fx->srv = kr_httpd_listen(fx->base, &c, on_request, fx, &err);
    assert_non_null(fx->srv);
    int fd = client_connect(kr_httpd_port(fx->srv));
    send_str(fd, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n01234567890123456789");
    char buf[4096];
    read_response(fx, fd, buf, sizeof buf, 0);
    assert_non_null(strstr(buf, "HTTP/1.1 413 "));
    assert_int_equal(fx->calls, 0);
    close(fd);
}

static void test_relisten_same_port_and_in_use(void **state)
{
    fixture *fx = *state;
    int port = kr_httpd_port(fx->srv);
    /* A kept-alive connection is open when the server closes. */
    int fd = client_connect(port);
    char buf[4096];
    send_str(fd, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    read_response(fx, fd, buf, sizeof buf, 0);

    kr_httpd_config c = plain_config(port);
    kr_httpd_error err;
    assert_null(kr_httpd_listen(fx->base, &c, on_request, fx, &err));
    assert_string_equal(err.code, "EADDRINUSE");
    assert_non_null(strstr(err.message, "address already in use"));

    kr_httpd_close(fx->srv);
    fx->srv = kr_httpd_listen(fx->base, &c, on_request, fx, &err);
    assert_non_null(fx->srv);
    assert_int_equal(kr_httpd_port(fx->srv), port);
    close(fd);
}

static void test_bad_host(void **state)
{
    fixture *fx = *state;
    kr_httpd_config c = plain_config(0);
    c.host = "192.0.2.1"; /* TEST-NET: never a local address */
    kr_httpd_error err;
    assert_null(kr_httpd_listen(fx->base, &c, on_request, fx, &err));
    assert_string_equal(err.code, "EADDRNOTAVAIL");
}

/* ---- TLS ----------------------------------------------------------------- */

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} pair;

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (ca) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
}

static pair make_pair(const char *cn, const pair *issuer, int ca)
{
    pair p;
    p.key = EVP_EC_gen("P-256");
    p.cert = make_cert(p.key, cn, issuer ? issuer->cert : NULL, issuer ? issuer->key : NULL, ca);
    return p;
}

static void free_pair(pair *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
}

static char *to_pem(X509 *x, EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (x) PEM_write_bio_X509(b, x);
    if (k) PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

typedef struct {
    int port;
    const pair *client;  /* NULL: no client certificate */
    X509 *trust;         /* the server's CA */
    atomic_int done;
    int handshake_ok;
    char response[4096];
} tls_client;

static void *tls_client_main(void *arg)
{
    tls_client *c = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), c->trust);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (c->client) {
        SSL_CTX_use_certificate(ctx, c->client->cert);
        SSL_CTX_use_PrivateKey(ctx, c->client->key);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL *ssl = SSL_new(ctx);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1) {
            static const char req[] = "GET /tls HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
            SSL_write(ssl, req, sizeof req - 1);
            size_t len = 0;
            int n;
            while (len < sizeof c->response - 1 &&
                   (n = SSL_read(ssl, c->response + len, (int)(sizeof c->response - 1 - len))) > 0)
                len += (size_t)n;
            c->response[len] = '\0';
            /* TLS 1.3 reports a refused client certificate only at the first read. */
            c->handshake_ok = len > 0;
        }
    }
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    atomic_store(&c->done, 1);
    return NULL;
}

static void run_tls_client(fixture *fx, tls_client *c)
{
    pthread_t t;
    pthread_create(&t, NULL, tls_client_main, c);
    for (int i = 0; i < 1000 && !atomic_load(&c->done); i++) pump(fx, 5);
    pthread_join(t, NULL);
}

static void test_tls_client_certificates(void **state)
{
    fixture *fx = *state;
    pair ca = make_pair("server ca", NULL, 1);
    pair leaf = make_pair("server", &ca, 0);
    pair client_ca = make_pair("client ca", NULL, 1);
    pair client = make_pair("good client", &client_ca, 0);
    pair other_ca = make_pair("other ca", NULL, 1);
    pair stranger = make_pair("stranger", &other_ca, 0);

    char *chain = malloc(8192);
    char *leaf_pem = to_pem(leaf.cert, NULL), *ca_pem = to_pem(ca.cert, NULL);
    snprintf(chain, 8192, "%s%s", leaf_pem, ca_pem); /* leaf + chain */
    char *key_pem = to_pem(NULL, leaf.key), *client_ca_pem = to_pem(client_ca.cert, NULL);

    kr_httpd_close(fx->srv);
    kr_httpd_config c = plain_config(0);
    c.cert_pem = chain;
    c.cert_len = strlen(chain);
    c.key_pem = key_pem;
    c.key_len = strlen(key_pem);
    c.client_ca_pem = client_ca_pem;
    c.client_ca_len = strlen(client_ca_pem);
    kr_httpd_error err;
    fx->srv = kr_httpd_listen(fx->base, &c, on_request, fx, &err);
    assert_non_null(fx->srv);
    assert_true(kr_httpd_is_tls(fx->srv));

    tls_client good = {.port = kr_httpd_port(fx->srv), .client = &client, .trust = ca.cert};
    run_tls_client(fx, &good);
    assert_true(good.handshake_ok);
    assert_non_null(strstr(good.response, "tls=1"));
    assert_non_null(strstr(fx->peer_cert, "-----BEGIN CERTIFICATE-----"));
    char *client_pem = to_pem(client.cert, NULL);
    assert_string_equal(fx->peer_cert, client_pem);
    free(client_pem);

    tls_client anonymous = {.port = kr_httpd_port(fx->srv), .client = NULL, .trust = ca.cert};
    run_tls_client(fx, &anonymous);
    assert_true(anonymous.handshake_ok);
    assert_string_equal(fx->peer_cert, "");

    int calls = fx->calls;
    tls_client bad = {.port = kr_httpd_port(fx->srv), .client = &stranger, .trust = ca.cert};
    run_tls_client(fx, &bad);
    assert_false(bad.handshake_ok);
    assert_int_equal(fx->calls, calls);

    /* Required: a client without a certificate is refused too. */
    kr_httpd_close(fx->srv);
    c.require_client_cert = 1;
    fx->srv = kr_httpd_listen(fx->base, &c, on_request, fx, &err);
    assert_non_null(fx->srv);
    tls_client none = {.port = kr_httpd_port(fx->srv), .client = NULL, .trust = ca.cert};
    run_tls_client(fx, &none);
    assert_false(none.handshake_ok);
    assert_int_equal(fx->calls, calls);

    /* Unusable PEM and a key of another certificate are world failures. */
    kr_httpd_config bad_cfg = c;
    bad_cfg.cert_pem = "junk";
    bad_cfg.cert_len = 4;
    assert_null(kr_httpd_listen(fx->base, &bad_cfg, on_request, fx, &err));
    assert_string_equal(err.code, "EINVAL");
    char *other_key = to_pem(NULL, client.key);
    bad_cfg = c;
    bad_cfg.key_pem = other_key;
    bad_cfg.key_len = strlen(other_key);
    assert_null(kr_httpd_listen(fx->base, &bad_cfg, on_request, fx, &err));
    assert_string_equal(err.code, "EINVAL");
    assert_string_equal(err.message, "tls.key does not match tls.cert");

    free(other_key);
    free(chain);
    free(leaf_pem);
    free(ca_pem);
    free(key_pem);
    free(client_ca_pem);
    free_pair(&ca);
    free_pair(&leaf);
    free_pair(&client_ca);
    free_pair(&client);
    free_pair(&other_ca);
    free_pair(&stranger);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listen_port_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_with_query_and_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_body_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_has_length_but_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_before_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_request_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_released_unanswered_gets_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_header_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_body_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relisten_same_port_and_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_certificates, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
