/* The OpenCL runtime: device choice, context and queue, error text, kernel
 * programs built from the embedded cl/ sources through the on-disk program
 * cache, and device buffers. Knows nothing about graphs or models. */
#ifndef CLUNET_RUNTIME_H
#define CLUNET_RUNTIME_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "clunet.h"
#include "common/common.h"

typedef struct rt_program rt_program;

/* The public context is the runtime context. */
typedef struct clunet_context {
	cl_platform_id platform;
	cl_device_id device;
	cl_context context;
	cl_command_queue queue;
	clunet_device_info info;
	int is_cpu;            /* CPU-class device: kernels shaped for SIMD cores */
	int profiling;
	size_t base_align;     /* CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes */
	size_t max_wg;         /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
	int host_unified;      /* CL_DEVICE_HOST_UNIFIED_MEMORY */
	int vec_width;         /* CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT: 16 AVX-512, 8 AVX2 */
	cu_log log;

	/* program cache */
	char *cache_root;      /* "" when off */
	char *cache_dir;       /* per-device folder, NULL when off */
	uint64_t cache_budget;
	unsigned cache_hits, cache_misses, cache_saves;
	rt_program *programs;  /* built in this process */
	size_t n_programs;
	int unsaved;           /* programs built from source, not yet in the cache */
	char *kernel_dir;      /* $CLUNET_KERNEL_DIR: read sources from here */

	/* tuning database (lib/tune/db.c), read on first use */
	void *tune_db;         /* cJSON object */
	int tune_loaded;
	int clblast_applied;   /* the database's CLBlast parameters were handed to CLBlast */
} rt_ctx;

/* "CL_OUT_OF_RESOURCES" etc. */
const char *rt_cl_error_name(cl_int err);
/* Reports a failed OpenCL call: "clFoo(what) failed: CL_X (-n)". Allocation
 * failures become CLUNET_ERR_DEVICE_MEMORY, the rest CLUNET_ERR_OPENCL. */
clunet_status rt_cl_fail(cl_int err, const char *call, const char *what);
#define RT_CHECK(call_expr, name, what)                                       \
	do {                                                                  \
		cl_int rt_err_ = (call_expr);                                 \
		if (rt_err_ != CL_SUCCESS)                                    \
			return rt_cl_fail(rt_err_, name, what);               \
	} while (0)

clunet_status rt_create(const clunet_context_options *opt, rt_ctx **out);

/* The tuning database in the cache folder (lib/tune/db.c): the variant
 * stored for an op key or NULL; store one; write the file; list entries. */
const char *rt_tune_get(rt_ctx *rt, const char *key);
clunet_status rt_tune_put(rt_ctx *rt, const char *key, const char *variant);
void rt_tune_del(rt_ctx *rt, const char *key);
clunet_status rt_tune_save(rt_ctx *rt);
size_t rt_tune_count(rt_ctx *rt);
int rt_tune_entry(rt_ctx *rt, size_t i, const char **key, const char **variant);
void rt_tune_free(rt_ctx *rt);
/* The database key of the tuned CLBlast parameters (lib/tune/clblast.c). */
#define RT_CLBLAST_KEY "clblast Xgemm"
/* Hands the database's CLBlast Xgemm parameters (if any) to CLBlast through
 * CLBlastOverrideParameters, once per context unless `again`. */
clunet_status rt_clblast_apply(rt_ctx *rt, int again);
void rt_destroy(rt_ctx *rt);

/* The embedded (or $CLUNET_KERNEL_DIR) source of cl/<name>, prelude included.
 * Caller frees *text. */
clunet_status rt_source(rt_ctx *rt, const char *name, char **text, size_t *len);

/* Program for cl/<source> built with `options`, from this process's programs,
 * else the disk cache, else a fresh build (then saved). */
clunet_status rt_program_get(rt_ctx *rt, const char *source, const char *options,
			     cl_program *out);
/* Saves the binaries of programs built since the last call. Called after
 * their kernels have run once: drivers that finish compiling at the first
 * launch (PoCL specialises every kernel for its work-group size then) hand
 * back a complete binary only after it. */
void rt_cache_flush(rt_ctx *rt);
/* A large read-write buffer (the activation arena), released with
 * rt_free_large. CPU-class devices sharing host memory get it over host
 * memory the library maps itself, 2 MiB aligned and advised for transparent
 * huge pages (the kernels stride across channel planes kilobytes apart: with
 * 4 KiB pages nearly every plane is another TLB entry). From 2 MiB;
 * CLUNET_HUGEPAGES=1: at any size, 0: never. */
enum { RT_HUGE_PAGE = 2 << 20 };
clunet_status rt_alloc_large(rt_ctx *rt, size_t bytes, const char *what, cl_mem *out);
void rt_free_large(cl_mem mem);
/* Drops the pending cache writes of every program but `keep`'s n (the
 * tuner's losing candidates: on PoCL each binary written costs a compile of
 * the kernel's generic form, ~1 s, for a program no plan builds again). */
void rt_cache_keep_only(rt_ctx *rt, const cl_program *keep, size_t n);

/* A new kernel object (caller releases it). */
clunet_status rt_kernel_create(rt_ctx *rt, const char *source, const char *options,
			       const char *kernel, cl_kernel *out);

/* Device buffer of `bytes`; OOM and limits give CLUNET_ERR_DEVICE_MEMORY with `what`. */
clunet_status rt_alloc(rt_ctx *rt, size_t bytes, const char *what, cl_mem *out);

/* The cache key of a program (caller frees). */
clunet_status rt_program_key(rt_ctx *rt, const char *source, const char *options, char **key);

/* Program cache internals (runtime/cache.c), exposed for tests and tools. */
clunet_status rt_cache_init(rt_ctx *rt, const char *dir_option, int no_cache);
/* Loads a binary for key; *bin NULL on a miss. */
void rt_cache_load(rt_ctx *rt, const char *key, unsigned char **bin, size_t *len);
void rt_cache_store(rt_ctx *rt, const char *key, const unsigned char *bin, size_t len);
/* The entry file of a key (caller frees), NULL when caching is off. */
char *rt_cache_entry_path(const rt_ctx *rt, const char *key);

#endif
