// hostcalls runs the host-call script in its request body, one command a
// line, and answers with one result line per command:
//   set KEY LEN TTL_MS   store LEN bytes of 'v'      -> "set KEY RC"
//   get KEY              read KEY                    -> "get KEY RC [VALUE]"
//   del KEY                                          -> "del KEY RC"
//   fetch METHOD URL     fetch with an empty body    -> "fetch RC STATUS BODYLEN" and the body on the next line
//   fetchcap CAP URL     GET into a CAP-byte buffer  -> "fetchcap RC", then
//                        "result RC2 STATUS" after http_fetch_result if RC > CAP
//   log LEVEL MSG                                    -> "log RC"
//   stderr N             N lines of 100 bytes to stderr -> "stderr N"
// RC is the host function's result: a length, 0, or a negative code.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aegis.h"

static char script[1 << 16];
static char value[1 << 20];
static char resp[1 << 16];

int main(void) {
	size_t n = 0;
	ssize_t r;
	while (n < sizeof script - 1 && (r = read(0, script + n, sizeof script - 1 - n)) > 0)
		n += (size_t)r;
	script[n] = 0;
	printf("Content-Type: text/plain\n\n");
	for (char *line = strtok(script, "\n"); line; line = strtok(NULL, "\n")) {
		char op[16], a[1024], b[1024];
		long len, ttl;
		if (sscanf(line, "set %1023s %ld %ld", a, &len, &ttl) == 3) {
			memset(value, 'v', (size_t)len);
			printf("set %s %d\n", a, aegis_kv_set(a, value, (size_t)len, ttl));
		} else if (sscanf(line, "get %1023s", a) == 1) {
			int32_t rc = aegis_kv_get(a, value, sizeof value);
			printf("get %s %d", a, rc);
			if (rc >= 0)
				printf(" %.*s", rc, value);
			printf("\n");
		} else if (sscanf(line, "del %1023s", a) == 1) {
			printf("del %s %d\n", a, aegis_kv_delete(a));
		} else if (sscanf(line, "fetchcap %ld %1023s", &len, a) == 2) {
			int m = snprintf(b, sizeof b, "GET %s\n\n", a);
			int32_t rc = aegis_http_fetch(b, (size_t)m, resp, (size_t)len);
			printf("fetchcap %d\n", rc);
			if (rc > len) {
				int32_t rc2 = aegis_http_fetch_result(resp, sizeof resp);
				printf("result %d %d\n", rc2, atoi(resp));
			}
		} else if (sscanf(line, "fetch %15s %1023s", op, a) == 2) {
			int m = snprintf(b, sizeof b, "%s %s\nX-Test: 1\n\n", op, a);
			int32_t rc = aegis_http_fetch(b, (size_t)m, resp, sizeof resp);
			if (rc > (int32_t)sizeof resp) {
				printf("fetch %d too-large-for-buffer\n", rc);
				continue;
			}
			if (rc < 0) {
				printf("fetch %d\n", rc);
				continue;
			}
			char *body = strstr(resp, "\n\n");
			int status = atoi(resp);
			int blen = body ? rc - (int)(body + 2 - resp) : 0;
			printf("fetch %d %d %d\n%.*s\n", rc, status, blen, blen, body ? body + 2 : "");
		} else if (sscanf(line, "stderr %ld", &len) == 1) {
			for (long i = 0; i < len; i++)
				fprintf(stderr, "%099ld\n", i);
			printf("stderr %ld\n", len);
		} else if (sscanf(line, "log %ld %1023[^\n]", &len, a) == 2) {
			printf("log %d\n", aegis_log((int32_t)len, a, "source=hostcalls\nline=1"));
		} else {
			printf("unknown %s\n", line);
		}
	}
	return 0;
}
