/* The plain C HTTP client (runtime/http_client.c) on its own event base,
 * against libevent's evhttp as a loopback server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
    struct event_base *base;
    struct evhttp *httpd;
    int port;
    struct evhttp_request *held; /* a request deliberately never answered */
    kr_http_result *res;
    int calls;
} fixture;

static void serve(struct evhttp_request *req, void *arg)
{
    fixture *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();
    if (strcmp(uri, "/hang") == 0) {
        f->held = req;
        evbuffer_free(body);
        return;
    }
    if (strcmp(uri, "/chunked") == 0) {
        /* No Content-Length: the size limit must hold while reading. */
        evhttp_send_reply_start(req, 200, "OK");
        char chunk[4096];
        memset(chunk, 'y', sizeof chunk);
        for (int i = 0; i < 64; i++) {
            evbuffer_add(body, chunk, sizeof chunk);
            evhttp_send_reply_chunk(req, body);
        }
        evhttp_send_reply_end(req);
        evbuffer_free(body);
        return;
    }
    if (strcmp(uri, "/big") == 0) {
        for (int i = 0; i < 1000; i++) evbuffer_add(body, "x", 1);
    } else {
        evhttp_add_header(out, "X-Multi", "a");
        evhttp_add_header(out, "X-Multi", "b");
        evbuffer_add_printf(body, "hello %s", evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "post" : "get");
    }
    evhttp_send_reply(req, strcmp(uri, "/missing") == 0 ? 404 : 200, "OK", body);
    evbuffer_free(body);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->httpd = evhttp_new(f->base);
    evhttp_set_gencb(f->httpd, serve, f);
    evhttp_set_allowed_methods(f->httpd, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(f->httpd, "127.0.0.1", 0);
    assert_non_null(s);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sin, &len);
    f->port = ntohs(sin.sin_port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kr_http_shutdown();
    kr_http_result_free(f->res);
    evhttp_free(f->httpd);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void on_done(kr_http_result *res, void *arg)
{
    fixture *f = arg;
    kr_http_result_free(f->res);
    f->res = res;
    f->calls++;
    event_base_loopbreak(f->base);
}

static kr_http_request get(const char *url)
{
    kr_http_request r = {0};
    r.url = url;
    r.timeout = 5;
    r.connect_timeout = 5;
    r.verify_host = 1;
    r.max_body = 1 << 20;
    return r;
}

static void run(fixture *f, const kr_http_request *req)
{
    char err[256];
    kr_http_xfer *x = kr_http_start(f->base, req, on_done, f, err, sizeof err);
    assert_non_null(x);
    int before = f->calls;
    event_base_dispatch(f->base);
    assert_int_equal(f->calls, before + 1);
}

static const char *header(const kr_http_result *res, const char *name)
{
    for (size_t i = 0; i < res->nheaders; i++)
        if (strcmp(res->headers[i].name, name) == 0) return res->headers[i].value;
    return NULL;
}

static void test_check_url(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(kr_http_check_url("http://127.0.0.1:80/x?y=1", err, sizeof err), 0);
    assert_int_equal(kr_http_check_url("https://example.com", err, sizeof err), 0);
    assert_int_equal(kr_http_check_url("localhost:80", err, sizeof err), -1);
    assert_non_null(strstr(err, "must start with http:// or https://"));
    assert_int_equal(kr_http_check_url("http://a b/", err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid url"));
}

static void test_get_and_reuse(void **state)
{
    fixture *f = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", f->port);
    kr_http_request req = get(url);
    run(f, &req);
    assert_null(f->res->code);
    assert_int_equal(f->res->status, 200);
    assert_int_equal(f->res->body_len, 9);
    assert_memory_equal(f->res->body, "hello get", 9);
    assert_string_equal(header(f->res, "x-multi"), "a, b");
    assert_string_equal(f->res->http_version, "1.1");
    assert_int_equal(f->res->reused, 0);
    run(f, &req);
    assert_int_equal(f->res->reused, 1);
    req.fresh = 1;
    run(f, &req);
    assert_int_equal(f->res->reused, 0);
}

static void test_post_and_404(void **state)
{
    fixture *f = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/missing", f->port);
    kr_http_request req = get(url);
    req.method = "POST";
    req.body = "abc";
    req.body_len = 3;
    kr_http_header h = {"X-Test", "1"};
    req.headers = &h;
    req.nheaders = 1;
    run(f, &req);
    assert_null(f->res->code);
    assert_int_equal(f->res->status, 404);
    assert_memory_equal(f->res->body, "hello post", 10);
}

static void test_too_big(void **state)
{
    fixture *f = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", f->port);
    kr_http_request req = get(url);
    req.max_body = 999;
    run(f, &req);
    assert_string_equal(f->res->code, "ETOOBIG");
    assert_null(f->res->body);
    req.max_body = 1000;
    run(f, &req);
    assert_null(f->res->code);
    assert_int_equal(f->res->body_len, 1000);
}

static void test_too_big_chunked(void **state)
{
    fixture *f = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/chunked", f->port);
    kr_http_request req = get(url);
    req.max_body = 64 * 4096 - 1;
    run(f, &req);
    assert_string_equal(f->res->code, "ETOOBIG");
    req.max_body = 64 * 4096;
    run(f, &req);
    assert_null(f->res->code);
    assert_int_equal(f->res->body_len, 64 * 4096);
}

static void test_unix_socket(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/kr-http-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/s", dir);
    struct evconnlistener *l = evconnlistener_new_bind(f->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
                                                       (struct sockaddr *)&sun, sizeof sun);
    assert_non_null(l);
    evhttp_bind_listener(f->httpd, l);
    kr_http_request req = get("http://localhost/hello");
    req.unix_socket = sun.sun_path;
    run(f, &req);
    assert_null(f->res->code);
    assert_memory_equal(f->res->body, "hello get", 9);
    unlink(sun.sun_path);
    req.fresh = 1;
    run(f, &req);
    assert_string_equal(f->res->code, "ECONNREFUSED");
    rmdir(dir);
}

/* A listener that never accepts: the kernel completes the TCP handshake. */
static int silent_listener(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(s, 8), 0);
    getsockname(s, (struct sockaddr *)&sin, &len);
    *port = ntohs(sin.sin_port);
    return s;
}

static void test_silent_peer(void **state)
{
    fixture *f = *state;
    int port;
    int s = silent_listener(&port);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    kr_http_request req = get(url);
    req.timeout = 0.3;
    run(f, &req);
    assert_string_equal(f->res->code, "ETIMEDOUT");
    assert_non_null(strstr(f->res->message, "timed out after 0.3 s: http://127.0.0.1:"));
    /* The TLS handshake never completes: the connect limit applies. */
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", port);
    req = get(url);
    req.connect_timeout = 0.2;
    run(f, &req);
    assert_string_equal(f->res->code, "ETIMEDOUT");
    assert_non_null(strstr(f->res->message, "timed out after 0.2 s: https://127.0.0.1:"));
    close(s);
}

static void test_refused(void **state)
{
    fixture *f = *state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    bind(s, (struct sockaddr *)&sin, sizeof sin);
    getsockname(s, (struct sockaddr *)&sin, &len);
    close(s);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    kr_http_request req = get(url);
    run(f, &req);
    assert_string_equal(f->res->code, "ECONNREFUSED");
    char expect[200];
    snprintf(expect, sizeof expect, "connection refused: %s", url);
    assert_string_equal(f->res->message, expect);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hang", f->port);
    kr_http_request req = get(url);
    req.timeout = 0.2;
    run(f, &req);
    assert_string_equal(f->res->code, "ETIMEDOUT");
    assert_non_null(strstr(f->res->message, "timed out after 0.2 s"));
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    event_base_loopbreak(arg);
}

static void test_abort_and_shutdown(void **state)
{
    fixture *f = *state;
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hang", f->port);
    kr_http_request req = get(url);
    kr_http_xfer *a = kr_http_start(f->base, &req, on_done, f, err, sizeof err);
    kr_http_xfer *b = kr_http_start(f->base, &req, on_done, f, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    struct timeval tv = {0, 100000};
    event_base_once(f->base, -1, EV_TIMEOUT, stop_loop, f->base, &tv);
    event_base_dispatch(f->base);
    assert_non_null(f->held); /* the requests did reach the server */
    kr_http_abort(a);
    assert_int_equal(f->calls, 0); /* an aborted transfer never calls back */
    kr_http_shutdown();
    assert_int_equal(f->calls, 1); /* shutdown completes what is left */
    assert_string_equal(f->res->code, "EHTTP");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_url),
        cmocka_unit_test_setup_teardown(test_get_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_and_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_shutdown, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
