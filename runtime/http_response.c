/* The response side of a transfer (see http_xfer.h): the body and headers as
 * they arrive, within their limits; the peer's certificates; and what a failed
 * transfer means, as a stable error code and a message naming the URL. */
#include "http_xfer.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
void kr_http_result_fail(kr_http_result *res, const char *code, const char *fmt, ...)
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

size_t kr_xfer_on_body(char *data, size_t size, size_t nmemb, void *arg)
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

size_t kr_xfer_on_header(char *data, size_t size, size_t nmemb, void *arg)
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

double kr_xfer_seconds(CURL *easy, CURLINFO what)
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

void kr_xfer_classify(kr_http_xfer *x, CURLcode rc)
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
            kr_http_result_fail(res, "ETOOBIG", "response headers larger than %d bytes: %s", MAX_HEADER_BYTES, x->url);
        else
            kr_http_result_fail(res, "ETOOBIG", "response body larger than %zu bytes: %s", x->max_body, x->url);
    } else if (x->no_memory) {
        kr_http_result_fail(res, "EHTTP", "out of memory: %s", x->url);
    } else if (rc == CURLE_FILESIZE_EXCEEDED) {
        kr_http_result_fail(res, "ETOOBIG", "response body larger than %zu bytes: %s", x->max_body, x->url);
    } else if (rc == CURLE_OPERATION_TIMEDOUT || (rc == CURLE_COULDNT_CONNECT && oserr == ETIMEDOUT)) {
        /* Report the limit that applied: the connect one if the transfer
         * ended before the total limit could have been reached. */
        double limit = x->timeout;
        if (x->connect_timeout < x->timeout && kr_xfer_seconds(x->easy, CURLINFO_TOTAL_TIME_T) < x->timeout - 0.05)
            limit = x->connect_timeout;
        kr_http_result_fail(res, "ETIMEDOUT", "timed out after %g s: %s", limit, x->url);
    } else if (rc == CURLE_COULDNT_CONNECT && (oserr == ECONNREFUSED || oserr == ENOENT)) {
        kr_http_result_fail(res, "ECONNREFUSED", "connection refused: %s", x->url);
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY) {
        kr_http_result_fail(res, "ERESOLVE", "cannot resolve host (%s): %s", why, x->url);
    } else if (is_tls_error(rc)) {
        kr_http_result_fail(res, "ETLS", "tls failure (%s): %s", why, x->url);
    } else if (closed && strstr(why, "alert")) {
        kr_http_result_fail(res, "ETLS", "tls failure (%s): %s", why, x->url);
    } else if (closed && x->https && connects > 0 && x->header_bytes == 0) {
        /* With TLS 1.3 the client finishes its handshake before the server
         * has checked the client certificate; a rejection then shows up as a
         * closed connection on the first write or read, its alert unread. */
        kr_http_result_fail(res, "ETLS", "tls failure (the server closed the new connection right after the handshake, "
                          "e.g. it rejected the client certificate; %s): %s", why, x->url);
    } else if (rc == CURLE_GOT_NOTHING) {
        kr_http_result_fail(res, "ECONNRESET", "empty reply from server: %s", x->url);
    } else if (closed || rc == CURLE_PARTIAL_FILE || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM) {
        kr_http_result_fail(res, "ECONNRESET", "connection closed by peer (%s): %s", why, x->url);
    } else {
        kr_http_result_fail(res, "EHTTP", "%s: %s", why, x->url);
    }
}
