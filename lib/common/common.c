#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <unistd.h>

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char err_msg[2048];

const char *clunet_last_error(void)
{
	return err_msg;
}

void cu_clear_error(void)
{
	err_msg[0] = 0;
}

void cu_error_save(char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", err_msg);
}

void cu_error_restore(const char *buf)
{
	snprintf(err_msg, sizeof(err_msg), "%s", buf);
}

clunet_status cu_fail(clunet_status status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	va_end(ap);
	return status;
}

clunet_status cu_fail_prefix(clunet_status status, const char *fmt, ...)
{
	char prefix[512], old[sizeof(err_msg) - 600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(old, sizeof(old), "%.*s", (int)sizeof(old) - 1, err_msg);
	snprintf(err_msg, sizeof(err_msg), "%s: %s", prefix, old);
	return status;
}

const char *clunet_status_name(clunet_status s)
{
	static const char *const names[] = {
		"CLUNET_OK", "CLUNET_ERR_ARGUMENT", "CLUNET_ERR_IO", "CLUNET_ERR_FORMAT",
		"CLUNET_ERR_CONFIG", "CLUNET_ERR_WEIGHTS", "CLUNET_ERR_INPUT",
		"CLUNET_ERR_UNSUPPORTED", "CLUNET_ERR_NO_DEVICE", "CLUNET_ERR_OPENCL",
		"CLUNET_ERR_BUILD", "CLUNET_ERR_DEVICE_MEMORY", "CLUNET_ERR_HOST_MEMORY",
	};
	if ((unsigned)s < CU_ARRAY_LEN(names))
		return names[s];
	return "CLUNET_ERR_UNKNOWN";
}

void cu_logf(const cu_log *log, clunet_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (!log || !log->fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log->fn(log->user, level, msg);
}

void *cu_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		cu_fail(CLUNET_ERR_HOST_MEMORY, "out of host memory allocating %zu bytes", n);
	return p;
}

void *cu_calloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		cu_fail(CLUNET_ERR_HOST_MEMORY, "out of host memory allocating %zu x %zu bytes",
			count, size);
	return p;
}

void *cu_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		cu_fail(CLUNET_ERR_HOST_MEMORY, "out of host memory allocating %zu bytes", n);
	return q;
}

char *cu_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = cu_malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

char *cu_asprintf(const char *fmt, ...)
{
	va_list ap, ap2;
	int n;
	char *s;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	s = n < 0 ? NULL : cu_malloc((size_t)n + 1);
	if (s)
		vsnprintf(s, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return s;
}

int cu_mul_size(size_t a, size_t b, size_t *out)
{
	if (a && b > SIZE_MAX / a)
		return 0;
	*out = a * b;
	return 1;
}

float cu_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	uint32_t bits;
	float f;
	if (exp == 0) {
		/* zero or subnormal: exact in float */
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (man << 13);
	else
		bits = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t cu_float_to_half(float f)
{
	uint32_t x, sign, mant;
	int exp;
	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	mant = x & 0x7fffff;
	if (((x >> 23) & 0xff) == 0xff)
		return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (exp <= 0) {
		if (exp < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		{
			int shift = 14 - exp;
			uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
			if (rem > half || (rem == half && (h & 1)))
				h++;
			return (uint16_t)(sign | h);
		}
	}
	{
		uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fff;
		if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
			h++; /* may carry into the exponent: correct rounding */
		return (uint16_t)h;
	}
}

float cu_bf16_to_float(uint16_t b)
{
	uint32_t bits = (uint32_t)b << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

size_t cu_dtype_size(clunet_dtype dt)
{
	switch (dt) {
	case CLUNET_F32: case CLUNET_I32: return 4;
	case CLUNET_F64: case CLUNET_I64: return 8;
	case CLUNET_F16: case CLUNET_BF16: return 2;
	}
	return 0;
}

const char *cu_dtype_name(clunet_dtype dt)
{
	switch (dt) {
	case CLUNET_F32: return "F32";
	case CLUNET_F64: return "F64";
	case CLUNET_F16: return "F16";
	case CLUNET_BF16: return "BF16";
	case CLUNET_I64: return "I64";
	case CLUNET_I32: return "I32";
	}
	return "?";
}

int cu_dtype_is_float(clunet_dtype dt)
{
	return dt == CLUNET_F32 || dt == CLUNET_F64 || dt == CLUNET_F16 || dt == CLUNET_BF16;
}

#define CONVERT_LOOP(T)                                                                    \
	do {                                                                               \
		const unsigned char *s = src;                                              \
		for (size_t i = 0; i < n; i++) {                                           \
			switch (dt) {                                                      \
			case CLUNET_F32: { float v; memcpy(&v, s + 4 * i, 4); dst[i] = (T)v; break; } \
			case CLUNET_F64: { double v; memcpy(&v, s + 8 * i, 8); dst[i] = (T)v; break; } \
			case CLUNET_F16: { uint16_t v; memcpy(&v, s + 2 * i, 2); dst[i] = (T)cu_half_to_float(v); break; } \
			case CLUNET_BF16: { uint16_t v; memcpy(&v, s + 2 * i, 2); dst[i] = (T)cu_bf16_to_float(v); break; } \
			case CLUNET_I64: { int64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (T)v; break; } \
			case CLUNET_I32: { int32_t v; memcpy(&v, s + 4 * i, 4); dst[i] = (T)v; break; } \
			}                                                                  \
		}                                                                          \
	} while (0)

/* cu_half_to_float inline and without calls (subnormals: man * 2^-24, exact),
 * so that the weight conversion loop runs at memory speed (loading SD 1.5's
 * fp16 weights spent 3 s in the called version). */
static inline float half_to_float_inline(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	uint32_t bits;
	float f;
	if (exp == 0) {
		f = (float)man * 5.9604644775390625e-8f;
		return sign ? -f : f;
	}
	bits = sign | (exp == 31 ? 0x7f800000u | (man << 13) : ((exp + 112) << 23) | (man << 13));
	memcpy(&f, &bits, 4);
	return f;
}

typedef struct par_job {
	void (*fn)(void *ctx, size_t lo, size_t hi);
	void *ctx;
	size_t lo, hi;
} par_job;

static void *par_run(void *arg)
{
	par_job *j = arg;
	j->fn(j->ctx, j->lo, j->hi);
	return NULL;
}

void cu_parallel(size_t n, size_t min_chunk, void (*fn)(void *ctx, size_t lo, size_t hi),
		 void *ctx)
{
	enum { MAX_THREADS = 8 };
	pthread_t th[MAX_THREADS];
	par_job jobs[MAX_THREADS];
	int started[MAX_THREADS] = { 0 };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nt = cpus > 0 ? (size_t)cpus : 1, chunk;
	if (nt > MAX_THREADS)
		nt = MAX_THREADS;
	if (min_chunk < 1)
		min_chunk = 1;
	if (n / min_chunk < nt)
		nt = n / min_chunk ? n / min_chunk : 1;
	if (nt <= 1) {
		fn(ctx, 0, n);
		return;
	}
	chunk = (n + nt - 1) / nt;
	for (size_t t = 0; t < nt; t++) {
		jobs[t].fn = fn;
		jobs[t].ctx = ctx;
		jobs[t].lo = t * chunk < n ? t * chunk : n;
		jobs[t].hi = (t + 1) * chunk < n ? (t + 1) * chunk : n;
		if (t > 0)
			started[t] = pthread_create(&th[t], NULL, par_run, &jobs[t]) == 0;
	}
	par_run(&jobs[0]);
	for (size_t t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(th[t], NULL);
		else /* no thread to be had: this one does the work */
			par_run(&jobs[t]);
	}
}

static void convert_serial(float *dst, const void *src, clunet_dtype dt, size_t n);

typedef struct convert_job {
	float *dst;
	const unsigned char *src;
	clunet_dtype dt;
	size_t elem;
} convert_job;

static void convert_range(void *ctx, size_t lo, size_t hi)
{
	convert_job *j = ctx;
	convert_serial(j->dst + lo, j->src + lo * j->elem, j->dt, hi - lo);
}

void cu_convert_to_f32(float *dst, const void *src, clunet_dtype dt, size_t n)
{
	convert_job j;
	j.dst = dst;
	j.src = src;
	j.dt = dt;
	j.elem = cu_dtype_size(dt);
	if (j.elem == 0) { /* not a dtype we convert: the caller checked */
		convert_serial(dst, src, dt, n);
		return;
	}
	cu_parallel(n, (size_t)1 << 20, convert_range, &j);
}

static void convert_serial(float *dst, const void *src, clunet_dtype dt, size_t n)
{
	if (dt == CLUNET_F32) {
		memcpy(dst, src, n * 4);
		return;
	}
	if (dt == CLUNET_F16) {
		const unsigned char *b = src;
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, b + 2 * i, 2);
			dst[i] = half_to_float_inline(h);
		}
		return;
	}
	CONVERT_LOOP(float);
}

void cu_convert_to_f64(double *dst, const void *src, clunet_dtype dt, size_t n)
{
	CONVERT_LOOP(double);
}

void cu_convert_to_i64(int64_t *dst, const void *src, clunet_dtype dt, size_t n)
{
	CONVERT_LOOP(int64_t);
}

void cu_rng_seed(cu_rng *r, uint64_t seed)
{
	r->s = seed ^ 0x9e3779b97f4a7c15ull;
}

uint64_t cu_rng_u64(cu_rng *r)
{
	/* splitmix64: small, fast, good enough for test data */
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

float cu_rng_uniform(cu_rng *r)
{
	return (float)(cu_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float cu_rng_normal(cu_rng *r)
{
	double u1 = ((double)(cu_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
	double u2 = (double)(cu_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
	return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

clunet_status cu_read_file(const char *path, char **data, size_t *size)
{
	FILE *f = fopen(path, "rb");
	struct stat sb;
	long n;
	char *buf;
	if (!f)
		return cu_fail(CLUNET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		fclose(f);
		return cu_fail(CLUNET_ERR_IO, "%s: not a regular file", path);
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return cu_fail(CLUNET_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
	}
	buf = cu_malloc((size_t)n + 1);
	if (!buf) {
		fclose(f);
		return CLUNET_ERR_HOST_MEMORY;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return cu_fail(CLUNET_ERR_IO, "%s: short read", path);
	}
	fclose(f);
	buf[n] = 0;
	*data = buf;
	*size = (size_t)n;
	return CLUNET_OK;
}

clunet_status cu_write_file_atomic(const char *path, const void *data, size_t size)
{
	char *tmp = cu_asprintf("%s.tmp.%ld.%lx", path, (long)getpid(),
				(unsigned long)(cu_now_seconds() * 1e6));
	const unsigned char *p = data;
	int fd;
	if (!tmp)
		return CLUNET_ERR_HOST_MEMORY;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0) {
		clunet_status st = cu_fail(CLUNET_ERR_IO, "%s: cannot create a temporary file beside it: "
					   "%s", path, strerror(errno));
		free(tmp);
		return st;
	}
	while (size > 0) {
		ssize_t w = write(fd, p, size);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			cu_fail(CLUNET_ERR_IO, "%s: write failed: %s", path, strerror(errno));
			goto fail;
		}
		p += w;
		size -= (size_t)w;
	}
	if (fsync(fd) != 0) {
		cu_fail(CLUNET_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		cu_fail(CLUNET_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
		goto fail;
	}
	free(tmp);
	return CLUNET_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return CLUNET_ERR_IO;
}

clunet_status cu_mkdirs(const char *path)
{
	char *p = cu_strdup(path);
	struct stat st;
	if (!p)
		return CLUNET_ERR_HOST_MEMORY;
	for (char *s = p + 1; ; s++) {
		char c = *s;
		if (c == '/' || c == 0) {
			*s = 0;
			if (mkdir(p, 0755) != 0 && errno != EEXIST) {
				clunet_status r = cu_fail(CLUNET_ERR_IO, "%s: cannot create folder: %s", p,
							  strerror(errno));
				free(p);
				return r;
			}
			*s = c;
		}
		if (c == 0)
			break;
	}
	free(p);
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return cu_fail(CLUNET_ERR_IO, "%s: not a folder", path);
	return CLUNET_OK;
}

char *cu_path_join(const char *a, const char *b)
{
	size_t n = strlen(a);
	return cu_asprintf("%s%s%s", a, (n && a[n - 1] == '/') ? "" : "/", b);
}

double cu_now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
