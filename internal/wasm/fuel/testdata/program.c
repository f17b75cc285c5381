// program.c is a WASI command for the fuel tests: it computes a few things
// with loops, recursion, indirect calls (qsort), malloc and floating point,
// and prints them. Built by gen.go with clang --target=wasm32-wasi -O2.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t crc_table[256];

static void crc_init(void) {
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32(const unsigned char *p, size_t n) {
	uint32_t c = 0xffffffffu;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static int compare(const void *a, const void *b) {
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static unsigned ackermann(unsigned m, unsigned n) {
	if (m == 0)
		return n + 1;
	if (n == 0)
		return ackermann(m - 1, 1);
	return ackermann(m - 1, ackermann(m, n - 1));
}

int main(int argc, char **argv) {
	enum { N = 4096, M = 24 };
	crc_init();

	uint32_t *v = malloc(N * sizeof *v);
	uint32_t seed = 2463534242u;
	for (int i = 0; i < N; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		v[i] = seed;
	}
	qsort(v, N, sizeof *v, compare);
	printf("sorted crc %08x min %u max %u\n", crc32((unsigned char *)v, N * sizeof *v), v[0], v[N - 1]);
	free(v);

	double *a = calloc(M * M, sizeof *a), *b = calloc(M * M, sizeof *b), *c = calloc(M * M, sizeof *c);
	for (int i = 0; i < M * M; i++) {
		a[i] = (i % 7) * 0.5 - 1.0;
		b[i] = (i % 5) * 0.25 + 0.125;
	}
	for (int i = 0; i < M; i++)
		for (int j = 0; j < M; j++) {
			double s = 0;
			for (int k = 0; k < M; k++)
				s += a[i * M + k] * b[k * M + j];
			c[i * M + j] = s;
		}
	double trace = 0;
	for (int i = 0; i < M; i++)
		trace += c[i * M + i];
	printf("matrix trace %.6f\n", trace);

	char text[256];
	memset(text, 0, sizeof text);
	for (int i = 0; i < 20; i++)
		snprintf(text + strlen(text), sizeof text - strlen(text), "%d,", i * i);
	printf("squares %s crc %08x\n", text, crc32((unsigned char *)text, strlen(text)));
	printf("ackermann(2, 300) = %u\n", ackermann(2, 300));
	printf("args %d\n", argc);
	return 0;
}
