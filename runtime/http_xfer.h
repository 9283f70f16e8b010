/* One HTTP transfer, shared by the two halves of the client: http_client.c
 * (the libcurl multi handle on the libevent loop, starting and completing
 * transfers) and http_response.c (collecting and judging what came back).
 * Internal to them; the interface is http_client.h. */
#ifndef KMSRUN_HTTP_XFER_H
#define KMSRUN_HTTP_XFER_H

#include "http_client.h"

#include <curl/curl.h>
#include <stddef.h>

/* Response headers are not covered by max_body; bound them separately. */
enum { MAX_HEADER_BYTES = 1 << 20 };

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

/* curl's write and header callbacks; arg is the transfer. */
size_t kr_xfer_on_body(char *data, size_t size, size_t nmemb, void *arg);
size_t kr_xfer_on_header(char *data, size_t size, size_t nmemb, void *arg);
/* Turn the transfer's result into the failure curl's rc and our limits mean. */
void kr_xfer_classify(kr_http_xfer *x, CURLcode rc);
/* A curl time (CURLINFO_*_TIME_T) in seconds. */
double kr_xfer_seconds(CURL *easy, CURLINFO what);
/* Turn res into a failure: only code and message remain. */
void kr_http_result_fail(kr_http_result *res, const char *code, const char *fmt, ...);

#endif
