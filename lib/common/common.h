/* Internal helpers shared by every layer: error reporting, logging, small
 * string and number utilities. Nothing here knows about OpenCL or models. */
#ifndef CLUNET_COMMON_H
#define CLUNET_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "clunet.h"

#define CU_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CU_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CU_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define CU_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CU_PRINTF(f, a)
#endif

/* Records the message of a failure and returns its status, so that
 * `return cu_fail(CLUNET_ERR_IO, "%s: ...", path);` reads naturally. */
clunet_status cu_fail(clunet_status status, const char *fmt, ...) CU_PRINTF(2, 3);
/* Prefixes the current message with context ("while loading X: ...") and
 * passes the status on. */
clunet_status cu_fail_prefix(clunet_status status, const char *fmt, ...) CU_PRINTF(2, 3);
void cu_clear_error(void);
/* Keep the current message across work whose own failures are only
 * warnings (the program cache): save, do it, restore. */
void cu_error_save(char *buf, size_t cap);
void cu_error_restore(const char *buf);

/* A logger owned by a context; NULL fn drops messages. */
typedef struct cu_log {
	clunet_log_fn fn;
	void *user;
	int debug_cache; /* CLUNET_CACHE_DEBUG set */
} cu_log;
void cu_logf(const cu_log *log, clunet_log_level level, const char *fmt, ...) CU_PRINTF(3, 4);

/* Allocation that reports CLUNET_ERR_HOST_MEMORY through cu_fail. */
void *cu_malloc(size_t n);
void *cu_calloc(size_t count, size_t size);
void *cu_realloc(void *p, size_t n);
char *cu_strdup(const char *s);
char *cu_asprintf(const char *fmt, ...) CU_PRINTF(1, 2);

/* Multiplication of sizes with overflow detection: returns 0 on overflow. */
int cu_mul_size(size_t a, size_t b, size_t *out);

/* Float conversions used for weights and inputs. */
float cu_half_to_float(uint16_t h);
float cu_bf16_to_float(uint16_t b);
uint16_t cu_float_to_half(float f);
size_t cu_dtype_size(clunet_dtype dt);
const char *cu_dtype_name(clunet_dtype dt);
int cu_dtype_is_float(clunet_dtype dt);
/* Converts n elements of `src` (dtype dt, possibly unaligned) to float/double/int64. */
void cu_convert_to_f32(float *dst, const void *src, clunet_dtype dt, size_t n);
/* fn(ctx, lo, hi) over [0, n) split across the machine's cores (chunks of at
 * least min_chunk; the calling thread takes one); serial when small. */
void cu_parallel(size_t n, size_t min_chunk, void (*fn)(void *ctx, size_t lo, size_t hi),
		 void *ctx);
void cu_convert_to_f64(double *dst, const void *src, clunet_dtype dt, size_t n);
void cu_convert_to_i64(int64_t *dst, const void *src, clunet_dtype dt, size_t n);

/* Deterministic random numbers (splitmix64 + xoshiro-like), for random
 * weights, example inputs and tests. */
typedef struct cu_rng {
	uint64_t s;
} cu_rng;
void cu_rng_seed(cu_rng *r, uint64_t seed);
uint64_t cu_rng_u64(cu_rng *r);
float cu_rng_uniform(cu_rng *r);  /* [0, 1) */
float cu_rng_normal(cu_rng *r);

/* Whole-file helpers. */
clunet_status cu_read_file(const char *path, char **data, size_t *size);
/* Writes data to path through a temporary file in the same folder, fsync and
 * rename, so readers never see a partial file. */
clunet_status cu_write_file_atomic(const char *path, const void *data, size_t size);
clunet_status cu_mkdirs(const char *path);
char *cu_path_join(const char *a, const char *b);

double cu_now_seconds(void);

#endif
