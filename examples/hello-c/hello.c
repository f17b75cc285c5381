// hello answers every request with a greeting naming the path it was asked
// for. It uses only WASI (no aegis host calls), so the same module runs on
// any WASI host: the gateway benchmark serves it from aegis and from the
// Node.js peer (scripts/bench/node-wasi-server.mjs) side by side.
#include <stdio.h>
#include <stdlib.h>

int main(void) {
	const char *path = getenv("PATH_INFO");
	printf("Content-Type: text/plain; charset=utf-8\n\n");
	printf("hello from C, you asked for %s\n", path && *path ? path : "/");
	return 0;
}
