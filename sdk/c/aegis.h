/*
 * aegis.h: the aegis host module for edge functions written in C.
 *
 * Build with Debian's wasi-libc:
 *   clang --target=wasm32-wasi -O2 -I sdk/c -o fn.wasm fn.c
 *
 * A function is a WASI command in the CGI style: the request is in the
 * environment (REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_*) and on
 * stdin, and the function prints a CGI response ("Content-Type: ...",
 * an empty line, the body) on stdout. This header adds what CGI lacks:
 * key-value storage, outbound HTTP and structured logs. docs/ABI.md is the
 * reference; the raw imports below follow it exactly, and the wrappers
 * only add C types.
 *
 * Results: a length or 0 on success, one of the negative AEGIS_E* codes on
 * failure. A length larger than the buffer's capacity means nothing was
 * copied: call again with a buffer of that size.
 */
#ifndef AEGIS_H
#define AEGIS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AEGIS_OK 0
#define AEGIS_ENOTFOUND (-1)    /* kv_get: no such key */
#define AEGIS_EINVAL (-2)       /* malformed argument */
#define AEGIS_ETOOLARGE (-3)    /* key, value, body or response over its limit */
#define AEGIS_EQUOTA (-4)       /* kv_set: storage quota would be exceeded */
#define AEGIS_EDENIED (-5)      /* http_fetch: host not allowed */
#define AEGIS_ELIMIT (-6)       /* http_fetch: fetch count used up */
#define AEGIS_ETIMEOUT (-7)     /* http_fetch: timed out */
#define AEGIS_EUNAVAILABLE (-8) /* store or network failure */

#define AEGIS_LOG_DEBUG 0
#define AEGIS_LOG_INFO 1
#define AEGIS_LOG_WARN 2
#define AEGIS_LOG_ERROR 3

#define AEGIS_IMPORT(name) __attribute__((import_module("aegis"), import_name(name)))

AEGIS_IMPORT("kv_get")
int32_t __aegis_kv_get(const void *key, uint32_t key_len, void *buf, uint32_t buf_cap);
AEGIS_IMPORT("kv_set")
int32_t __aegis_kv_set(const void *key, uint32_t key_len, const void *val, uint32_t val_len, int64_t ttl_ms);
AEGIS_IMPORT("kv_delete")
int32_t __aegis_kv_delete(const void *key, uint32_t key_len);
AEGIS_IMPORT("http_fetch")
int32_t __aegis_http_fetch(const void *req, uint32_t req_len, void *resp, uint32_t resp_cap);
AEGIS_IMPORT("http_fetch_result")
int32_t __aegis_http_fetch_result(void *buf, uint32_t buf_cap);
AEGIS_IMPORT("log")
int32_t __aegis_log(int32_t level, const char *msg, uint32_t msg_len, const char *attrs, uint32_t attrs_len);

/* aegis_kv_get copies the value of key into buf (capacity cap) and returns
 * its length, or AEGIS_ENOTFOUND. */
static inline int32_t aegis_kv_get(const char *key, void *buf, size_t cap) {
	return __aegis_kv_get(key, (uint32_t)strlen(key), buf, (uint32_t)cap);
}

/* aegis_kv_set stores len bytes under key; ttl_ms 0 keeps them forever. */
static inline int32_t aegis_kv_set(const char *key, const void *val, size_t len, int64_t ttl_ms) {
	return __aegis_kv_set(key, (uint32_t)strlen(key), val, (uint32_t)len, ttl_ms);
}

/* aegis_kv_delete removes key; a missing key is not an error. */
static inline int32_t aegis_kv_delete(const char *key) {
	return __aegis_kv_delete(key, (uint32_t)strlen(key));
}

/* aegis_http_fetch sends a request encoded as
 *   "METHOD URL\n" ("Name: value\n")* "\n" body
 * and writes the response, encoded as
 *   "STATUS\n" ("Name: value\n")* "\n" body
 * into resp. If the returned length is over cap, read the response with
 * aegis_http_fetch_result into a larger buffer. */
static inline int32_t aegis_http_fetch(const void *req, size_t len, void *resp, size_t cap) {
	return __aegis_http_fetch(req, (uint32_t)len, resp, (uint32_t)cap);
}

/* aegis_http_fetch_result copies the last fetch response again. */
static inline int32_t aegis_http_fetch_result(void *buf, size_t cap) {
	return __aegis_http_fetch_result(buf, (uint32_t)cap);
}

/* aegis_log writes a structured line to the function's log; attrs is
 * "key=value" lines separated by '\n', or NULL. */
static inline int32_t aegis_log(int32_t level, const char *msg, const char *attrs) {
	return __aegis_log(level, msg, (uint32_t)strlen(msg), attrs ? attrs : "", attrs ? (uint32_t)strlen(attrs) : 0);
}

#endif /* AEGIS_H */
