// echo answers with what it was asked: method, path, query, the request
// headers (HTTP_* variables) and the body, as text/plain. It counts the
// requests it served in the key-value store ("visits") and says so in a
// response header, and logs one structured line per request.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aegis.h"

extern char **environ;

static const char *env(const char *name) {
	const char *v = getenv(name);
	return v ? v : "";
}

// visits increments the stored counter and returns it, or -1 if the store
// refused (the function still answers).
static long visits(void) {
	char buf[32];
	long n = 0;
	int32_t len = aegis_kv_get("visits", buf, sizeof buf - 1);
	if (len >= 0 && len < (int32_t)sizeof buf) {
		buf[len] = 0;
		n = strtol(buf, NULL, 10);
	} else if (len != AEGIS_ENOTFOUND) {
		return -1;
	}
	n++;
	int w = snprintf(buf, sizeof buf, "%ld", n);
	if (aegis_kv_set("visits", buf, (size_t)w, 0) != AEGIS_OK)
		return -1;
	return n;
}

int main(void) {
	long n = visits();
	printf("Content-Type: text/plain; charset=utf-8\n");
	printf("X-Visits: %ld\n\n", n);
	printf("method: %s\n", env("REQUEST_METHOD"));
	printf("script: %s\n", env("SCRIPT_NAME"));
	printf("path: %s\n", env("PATH_INFO"));
	printf("query: %s\n", env("QUERY_STRING"));
	if (getenv("CONTENT_TYPE"))
		printf("content-type: %s\n", env("CONTENT_TYPE"));
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "HTTP_", 5) == 0)
			printf("header: %s\n", *e);
	printf("body:\n");
	fflush(stdout);

	char chunk[4096];
	ssize_t r;
	while ((r = read(0, chunk, sizeof chunk)) > 0)
		fwrite(chunk, 1, (size_t)r, stdout);

	char attrs[64];
	snprintf(attrs, sizeof attrs, "visits=%ld", n);
	aegis_log(AEGIS_LOG_INFO, "echoed a request", attrs);
	return 0;
}
