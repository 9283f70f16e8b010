/* Baseline for bench/run: N sequential requests over one keep-alive connection
 * with libcurl's easy interface, the way a plain C client would do it. Prints the
 * elapsed seconds. Every answer must be HTTP 200.
 * Usage: curl_loop URL N [METHOD BODY]
 *   without METHOD: GET; with METHOD and BODY: that method with BODY as a JSON
 *   body (Content-Type: application/json), e.g. POST '{}' for a prpc call. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static size_t sink(char *p, size_t size, size_t n, void *arg)
{
    (void)p; (void)arg;
    return size * n;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s URL N [METHOD BODY]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, argv[1]);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    struct curl_slist *headers = NULL;
    if (argc == 5) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, argv[3]);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, argv[4]);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200) {
            fprintf(stderr, "request %d failed: %s (HTTP %ld)\n", i, curl_easy_strerror(rc), status);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    return 0;
}
