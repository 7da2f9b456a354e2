/* Small helpers shared by the test programs: failure counting that prints
 * what was compared, relative L2 error, temporary folders, an OpenCL context
 * opened once per program. */
#ifndef CLUNET_TESTUTIL_H
#define CLUNET_TESTUTIL_H

#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clunet.h"

static int tu_failures;
static int tu_checks;

#define CHECK(cond, ...)                                                             \
	do {                                                                         \
		tu_checks++;                                                         \
		if (!(cond)) {                                                       \
			tu_failures++;                                               \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                   \
			printf(__VA_ARGS__);                                         \
			printf("\n");                                                \
		}                                                                    \
	} while (0)

static inline double tu_rel_l2(const float *got, const double *want, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - want[i];
		if (!isfinite(got[i]))
			return INFINITY;
		num += d * d;
		den += want[i] * want[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline int tu_finish(const char *name)
{
	printf("%s: %d checks, %d failures\n", name, tu_checks, tu_failures);
	return tu_failures ? 1 : 0;
}

/* A fresh folder under $TMPDIR (or /tmp); caller frees the string. */
static inline char *tu_tempdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path = malloc(4096);
	snprintf(path, 4096, "%s/clunet-%s-XXXXXX", base && *base ? base : "/tmp", tag);
	if (!mkdtemp(path)) {
		perror("mkdtemp");
		exit(2);
	}
	return path;
}

static inline void tu_rmtree(const char *path)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

/* dir/<any folder>/name into out; 1 when found. */
static inline int tu_find_file(const char *dir, const char *name, char *out, size_t cap)
{
	char cmd[4400];
	FILE *p;
	int ok = 0;
	snprintf(cmd, sizeof(cmd), "ls -d '%s'/*/'%s' 2>/dev/null", dir, name);
	p = popen(cmd, "r");
	if (!p)
		return 0;
	if (fgets(out, (int)cap, p)) {
		out[strcspn(out, "\n")] = 0;
		ok = out[0] != 0;
	}
	pclose(p);
	return ok;
}

/* The whole file as a NUL-terminated string; caller frees. */
static inline int tu_read_text(const char *path, char **text, size_t *size)
{
	FILE *f = fopen(path, "rb");
	long n;
	if (!f)
		return 0;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	*text = malloc((size_t)n + 1);
	if (!*text || fread(*text, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(*text);
		*text = NULL;
		return 0;
	}
	(*text)[n] = 0;
	*size = (size_t)n;
	fclose(f);
	return 1;
}

static inline void tu_log(void *user, clunet_log_level level, const char *msg)
{
	(void)user;
	if (level == CLUNET_LOG_WARNING || getenv("CLUNET_TEST_VERBOSE"))
		printf("  [clunet %s] %s\n", level == CLUNET_LOG_WARNING ? "warning" : "debug", msg);
}

#endif
