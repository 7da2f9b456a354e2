#define _POSIX_C_SOURCE 200809L
#include "runtime.h"

#include <stdint.h>
#include <sys/mman.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cl_sources.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

struct rt_program {
	char *source;
	char *options;
	cl_program program;
	char *unsaved_key; /* set until the binary is written to the cache */
};

const char *rt_cl_error_name(cl_int err)
{
	switch (err) {
#define E(x) case x: return #x;
	E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
	E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES)
	E(CL_OUT_OF_HOST_MEMORY) E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP)
	E(CL_IMAGE_FORMAT_MISMATCH) E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE)
	E(CL_MAP_FAILURE) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
	E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) E(CL_COMPILE_PROGRAM_FAILURE)
	E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE) E(CL_DEVICE_PARTITION_FAILED)
	E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE_TYPE)
	E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
	E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
	E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
	E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS)
	E(CL_INVALID_PROGRAM) E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
	E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX)
	E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS)
	E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
	E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST) E(CL_INVALID_EVENT)
	E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
	E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
	E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
	E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
	case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
	}
	return "unknown OpenCL error";
}

clunet_status rt_cl_fail(cl_int err, const char *call, const char *what)
{
	/* CL_OUT_OF_RESOURCES from a launch also means register or work-group
	 * limits, or a kernel that faulted: memory only where memory is made */
	int allocating = !strcmp(call, "clCreateBuffer") || !strncmp(call, "clEnqueueWrite", 14) ||
			 !strncmp(call, "clEnqueueRead", 13);
	int oom = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
		  err == CL_INVALID_BUFFER_SIZE || (err == CL_OUT_OF_RESOURCES && allocating);
	return cu_fail(oom ? CLUNET_ERR_DEVICE_MEMORY : CLUNET_ERR_OPENCL, "%s(%s) failed: %s (%d)",
		       call, what ? what : "", rt_cl_error_name(err), (int)err);
}

/* ------------------------------------------------------------- devices */

static void info_str(cl_device_id d, cl_device_info what, char *buf, size_t cap)
{
	buf[0] = 0;
	if (clGetDeviceInfo(d, what, cap, buf, NULL) != CL_SUCCESS)
		buf[0] = 0;
	buf[cap - 1] = 0;
}

static void fill_info(cl_platform_id p, cl_device_id d, int pi, int di, clunet_device_info *o)
{
	cl_device_type type = 0;
	cl_uint cu = 0;
	cl_ulong gm = 0, ma = 0, lm = 0;
	char ext[8192];
	memset(o, 0, sizeof(*o));
	o->platform_index = pi;
	o->device_index = di;
	clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof(o->platform), o->platform, NULL);
	clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof(o->platform_version), o->platform_version,
			  NULL);
	o->platform[sizeof(o->platform) - 1] = 0;
	o->platform_version[sizeof(o->platform_version) - 1] = 0;
	info_str(d, CL_DEVICE_NAME, o->name, sizeof(o->name));
	info_str(d, CL_DEVICE_VENDOR, o->vendor, sizeof(o->vendor));
	info_str(d, CL_DEVICE_VERSION, o->version, sizeof(o->version));
	info_str(d, CL_DRIVER_VERSION, o->driver, sizeof(o->driver));
	clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof(type), &type, NULL);
	strcpy(o->type, (type & CL_DEVICE_TYPE_GPU)	    ? "GPU"
			: (type & CL_DEVICE_TYPE_CPU)	    ? "CPU"
			: (type & CL_DEVICE_TYPE_ACCELERATOR) ? "ACCELERATOR"
							      : "OTHER");
	clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof(cu), &cu, NULL);
	clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof(gm), &gm, NULL);
	clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(ma), &ma, NULL);
	clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(lm), &lm, NULL);
	o->compute_units = cu;
	o->global_mem_bytes = gm;
	o->max_alloc_bytes = ma;
	o->local_mem_bytes = lm;
	info_str(d, CL_DEVICE_EXTENSIONS, ext, sizeof(ext));
	o->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
	o->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
}

typedef struct dev_entry {
	cl_platform_id platform;
	cl_device_id device;
	clunet_device_info info;
} dev_entry;

static clunet_status enumerate(dev_entry *out, size_t cap, size_t *count)
{
	cl_platform_id plats[MAX_PLATFORMS];
	cl_uint np = 0;
	size_t n = 0;
	cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
	*count = 0;
	if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0))
		return cu_fail(CLUNET_ERR_NO_DEVICE,
			       "no OpenCL platform found (is an ICD such as pocl-opencl-icd "
			       "installed?)");
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clGetPlatformIDs", "");
	if (np > MAX_PLATFORMS)
		np = MAX_PLATFORMS;
	for (cl_uint p = 0; p < np; p++) {
		cl_device_id devs[MAX_DEVICES];
		cl_uint nd = 0;
		if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS)
			continue;
		if (nd > MAX_DEVICES)
			nd = MAX_DEVICES;
		for (cl_uint d = 0; d < nd; d++, n++) {
			if (n < cap) {
				out[n].platform = plats[p];
				out[n].device = devs[d];
				fill_info(plats[p], devs[d], (int)p, (int)d, &out[n].info);
			}
		}
	}
	*count = n;
	if (n == 0)
		return cu_fail(CLUNET_ERR_NO_DEVICE, "no OpenCL device found");
	return CLUNET_OK;
}

clunet_status clunet_list_devices(clunet_device_info *out, size_t cap, size_t *count)
{
	dev_entry devs[MAX_DEVICES];
	size_t n;
	clunet_status st;
	if (!count)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_list_devices: count is NULL");
	st = enumerate(devs, MAX_DEVICES, &n);
	*count = n;
	if (st)
		return st;
	for (size_t i = 0; i < n && i < cap && i < MAX_DEVICES; i++)
		out[i] = devs[i].info;
	return CLUNET_OK;
}

static int icontains(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay; hay++) {
		size_t i = 0;
		while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
			i++;
		if (i == n)
			return 1;
	}
	return n == 0;
}

static int parse_uint(const char *s, int *out)
{
	char *end;
	long v;
	if (!isdigit((unsigned char)*s))
		return 0;
	v = strtol(s, &end, 10);
	if (*end || v < 0 || v > 1000000)
		return 0;
	*out = (int)v;
	return 1;
}

static clunet_status select_device(const char *spec, dev_entry *chosen)
{
	dev_entry devs[MAX_DEVICES];
	size_t n, pick = (size_t)-1;
	char list[2048] = "";
	clunet_status st = enumerate(devs, MAX_DEVICES, &n);
	if (st)
		return st;
	if (n > MAX_DEVICES)
		n = MAX_DEVICES;
	for (size_t i = 0; i < n; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%d:%d %s / %s",
			 i ? "; " : "", devs[i].info.platform_index, devs[i].info.device_index,
			 devs[i].info.platform, devs[i].info.name);
	if (!spec || !*spec) {
		for (size_t i = 0; i < n && pick == (size_t)-1; i++)
			if (strcmp(devs[i].info.type, "GPU") == 0)
				pick = i;
		if (pick == (size_t)-1)
			pick = 0;
	} else {
		const char *colon = strchr(spec, ':');
		int a, b;
		if (colon) {
			char head[32];
			size_t hl = (size_t)(colon - spec);
			if (hl < sizeof(head)) {
				memcpy(head, spec, hl);
				head[hl] = 0;
				if (parse_uint(head, &a) && parse_uint(colon + 1, &b)) {
					for (size_t i = 0; i < n; i++)
						if (devs[i].info.platform_index == a &&
						    devs[i].info.device_index == b)
							pick = i;
					if (pick == (size_t)-1)
						return cu_fail(CLUNET_ERR_NO_DEVICE,
							       "device '%s': no such platform:device "
							       "(available: %s)", spec, list);
				}
			}
		}
		if (pick == (size_t)-1 && parse_uint(spec, &a)) {
			if ((size_t)a >= n)
				return cu_fail(CLUNET_ERR_NO_DEVICE,
					       "device '%s': only %zu device(s) (available: %s)", spec, n,
					       list);
			pick = (size_t)a;
		}
		for (size_t i = 0; i < n && pick == (size_t)-1; i++) {
			char full[300];
			snprintf(full, sizeof(full), "%s %s", devs[i].info.platform, devs[i].info.name);
			if (icontains(full, spec))
				pick = i;
		}
		if (pick == (size_t)-1)
			return cu_fail(CLUNET_ERR_NO_DEVICE,
				       "device '%s' matches no OpenCL device (available: %s)", spec,
				       list);
	}
	*chosen = devs[pick];
	return CLUNET_OK;
}

/* ------------------------------------------------------------- context */

void clunet_context_options_init(clunet_context_options *o)
{
	memset(o, 0, sizeof(*o));
}

clunet_status rt_create(const clunet_context_options *opt, rt_ctx **out)
{
	clunet_context_options defaults;
	rt_ctx *rt;
	dev_entry dev;
	cl_int err;
	cl_uint align_bits = 0;
	const char *spec, *kdir;
	clunet_status st;

	*out = NULL;
	if (!opt) {
		clunet_context_options_init(&defaults);
		opt = &defaults;
	}
	spec = opt->device ? opt->device : getenv("CLUNET_DEVICE");
	st = select_device(spec, &dev);
	if (st)
		return st;
	rt = cu_calloc(1, sizeof(rt_ctx));
	if (!rt)
		return CLUNET_ERR_HOST_MEMORY;
	rt->platform = dev.platform;
	rt->device = dev.device;
	rt->info = dev.info;
	rt->is_cpu = strcmp(dev.info.type, "CPU") == 0;
	/* force the kernels shaped for the other device class (to test them) */
	if (getenv("CLUNET_DEVICE_CLASS") && !strcmp(getenv("CLUNET_DEVICE_CLASS"), "gpu"))
		rt->is_cpu = 0;
	else if (getenv("CLUNET_DEVICE_CLASS") && !strcmp(getenv("CLUNET_DEVICE_CLASS"), "cpu"))
		rt->is_cpu = 1;
	rt->profiling = opt->profiling;
	rt->log.fn = opt->log;
	rt->log.user = opt->log_user;
	rt->log.debug_cache = getenv("CLUNET_CACHE_DEBUG") && *getenv("CLUNET_CACHE_DEBUG") &&
			      strcmp(getenv("CLUNET_CACHE_DEBUG"), "0") != 0;
	rt->cache_budget = opt->cache_budget_bytes ? opt->cache_budget_bytes : (512ull << 20);
	kdir = getenv("CLUNET_KERNEL_DIR");
	if (kdir && *kdir) {
		rt->kernel_dir = cu_strdup(kdir);
		if (!rt->kernel_dir) {
			st = CLUNET_ERR_HOST_MEMORY;
			goto fail;
		}
	}
	clGetDeviceInfo(rt->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof(align_bits), &align_bits,
			NULL);
	rt->base_align = align_bits >= 8 ? align_bits / 8 : 128;
	{ /* host and device share memory: buffers over host memory need no copy */
		cl_bool unified = CL_FALSE;
		if (clGetDeviceInfo(rt->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof(unified),
				    &unified, NULL) == CL_SUCCESS)
			rt->host_unified = unified == CL_TRUE;
	}
	{
		cl_uint vw = 0;
		clGetDeviceInfo(rt->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof(vw), &vw, NULL);
		rt->vec_width = vw ? (int)vw : 4;
		/* CLUNET_VEC_WIDTH=N: plan as for a device of another native width (the
		 * defaults written for another CPU class; testing the tuner) */
		if (getenv("CLUNET_VEC_WIDTH") && atoi(getenv("CLUNET_VEC_WIDTH")) > 0)
			rt->vec_width = atoi(getenv("CLUNET_VEC_WIDTH"));
	}
	if (clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(rt->max_wg),
			    &rt->max_wg, NULL) != CL_SUCCESS || rt->max_wg == 0)
		rt->max_wg = 1;
	{
		cl_context_properties props[] = { CL_CONTEXT_PLATFORM,
						  (cl_context_properties)rt->platform, 0 };
		rt->context = clCreateContext(props, 1, &rt->device, NULL, NULL, &err);
		if (!rt->context) {
			st = rt_cl_fail(err, "clCreateContext", rt->info.name);
			goto fail;
		}
	}
	rt->queue = clCreateCommandQueue(rt->context, rt->device,
					 rt->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
	if (!rt->queue) {
		st = rt_cl_fail(err, "clCreateCommandQueue", rt->info.name);
		goto fail;
	}
	st = rt_cache_init(rt, opt->cache_dir, opt->no_cache);
	if (st)
		goto fail;
	*out = rt;
	return CLUNET_OK;
fail:
	rt_destroy(rt);
	return st;
}

void rt_destroy(rt_ctx *rt)
{
	if (!rt)
		return;
	if (rt->queue)
		clFinish(rt->queue);
	rt_cache_flush(rt);
	for (size_t i = 0; i < rt->n_programs; i++) {
		clReleaseProgram(rt->programs[i].program);
		free(rt->programs[i].source);
		free(rt->programs[i].options);
		free(rt->programs[i].unsaved_key);
	}
	free(rt->programs);
	if (rt->queue)
		clReleaseCommandQueue(rt->queue);
	if (rt->context)
		clReleaseContext(rt->context);
	rt_tune_free(rt);
	free(rt->cache_root);
	free(rt->cache_dir);
	free(rt->kernel_dir);
	free(rt);
}

clunet_status clunet_context_create(const clunet_context_options *options, clunet_context_t **out)
{
	if (!out)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_context_create: out is NULL");
	return rt_create(options, out);
}

void clunet_context_destroy(clunet_context_t *ctx)
{
	rt_destroy(ctx);
}

clunet_status clunet_context_device(const clunet_context_t *ctx, clunet_device_info *out)
{
	if (!ctx || !out)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_context_device: NULL argument");
	*out = ctx->info;
	return CLUNET_OK;
}

const char *clunet_context_cache_dir(const clunet_context_t *ctx)
{
	return ctx && ctx->cache_dir ? ctx->cache_dir : "";
}

/* ------------------------------------------------------------- programs */

static const cu_cl_source *find_embedded(const char *name)
{
	for (size_t i = 0; i < cu_cl_n_sources; i++)
		if (strcmp(cu_cl_sources[i].name, name) == 0)
			return &cu_cl_sources[i];
	return NULL;
}

static clunet_status load_text(rt_ctx *rt, const char *name, char **text, size_t *len)
{
	const cu_cl_source *s;
	if (rt->kernel_dir) {
		char *path = cu_path_join(rt->kernel_dir, name);
		clunet_status st;
		if (!path)
			return CLUNET_ERR_HOST_MEMORY;
		st = cu_read_file(path, text, len);
		free(path);
		return st;
	}
	s = find_embedded(name);
	if (!s)
		return cu_fail(CLUNET_ERR_BUILD, "kernel source cl/%s is not embedded", name);
	*text = cu_malloc(s->len + 1);
	if (!*text)
		return CLUNET_ERR_HOST_MEMORY;
	memcpy(*text, s->text, s->len);
	(*text)[s->len] = 0;
	*len = s->len;
	return CLUNET_OK;
}

clunet_status rt_source(rt_ctx *rt, const char *name, char **text, size_t *len)
{
	char *prelude = NULL, *body = NULL, *all;
	size_t plen = 0, blen = 0;
	clunet_status st = load_text(rt, "prelude.cl", &prelude, &plen);
	if (st)
		return st;
	st = load_text(rt, name, &body, &blen);
	if (st) {
		free(prelude);
		return st;
	}
	all = cu_malloc(plen + blen + 2);
	if (!all) {
		free(prelude);
		free(body);
		return CLUNET_ERR_HOST_MEMORY;
	}
	memcpy(all, prelude, plen);
	all[plen] = '\n';
	memcpy(all + plen + 1, body, blen);
	all[plen + 1 + blen] = 0;
	free(prelude);
	free(body);
	*text = all;
	*len = plen + 1 + blen;
	return CLUNET_OK;
}

static char *cache_key(const rt_ctx *rt, const char *source_name, const char *text, size_t len,
		       const char *options)
{
	XXH128_hash_t h = XXH3_128bits(text, len);
	return cu_asprintf("clunet program cache key\nformat=1\nlibrary=%s\nsource=%s\n"
			   "source_xxh128=%016llx%016llx\noptions=%s\ndevice=%s\nvendor=%s\n"
			   "device_version=%s\ndriver=%s\nplatform=%s\nplatform_version=%s\n",
			   CLUNET_VERSION, source_name, (unsigned long long)h.high64,
			   (unsigned long long)h.low64, options, rt->info.name, rt->info.vendor,
			   rt->info.version, rt->info.driver, rt->info.platform,
			   rt->info.platform_version);
}

clunet_status rt_program_key(rt_ctx *rt, const char *source, const char *options, char **key)
{
	char *text;
	size_t len;
	clunet_status st = rt_source(rt, source, &text, &len);
	if (st)
		return st;
	*key = cache_key(rt, source, text, len, options);
	free(text);
	return *key ? CLUNET_OK : CLUNET_ERR_HOST_MEMORY;
}

static clunet_status build_log_fail(rt_ctx *rt, cl_program prog, const char *name,
				    const char *options, cl_int err)
{
	size_t n = 0;
	char *log = NULL;
	clunet_status st;
	clGetProgramBuildInfo(prog, rt->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
	if (n)
		log = malloc(n + 1);
	if (log) {
		clGetProgramBuildInfo(prog, rt->device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
		log[n] = 0;
		if (n > 1500)
			strcpy(log + 1500, "...");
	}
	st = cu_fail(CLUNET_ERR_BUILD, "clBuildProgram(cl/%s, \"%s\") failed: %s (%d): %s", name,
		     options, rt_cl_error_name(err), (int)err, log ? log : "(no build log)");
	free(log);
	return st;
}

/* Every kernel is created once so that lazily compiling drivers finish the
 * binary before it is read back. */
static cl_int create_all_kernels(cl_program prog)
{
	cl_uint nk = 0;
	cl_kernel ks[64];
	cl_int err = clCreateKernelsInProgram(prog, 64, ks, &nk);
	if (err != CL_SUCCESS)
		return err;
	for (cl_uint i = 0; i < nk && i < 64; i++)
		clReleaseKernel(ks[i]);
	return CL_SUCCESS;
}

static clunet_status save_binary(rt_ctx *rt, cl_program prog, const char *key)
{
	size_t size = 0;
	unsigned char *bin;
	if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof(size), &size, NULL) != CL_SUCCESS ||
	    size == 0)
		return CLUNET_OK; /* no binary: nothing to cache */
	bin = malloc(size);
	if (!bin)
		return CLUNET_OK;
	if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof(bin), &bin, NULL) == CL_SUCCESS)
		rt_cache_store(rt, key, bin, size);
	free(bin);
	return CLUNET_OK;
}

void rt_cache_flush(rt_ctx *rt)
{
	char saved[2048];
	if (!rt->unsaved)
		return;
	cu_error_save(saved, sizeof(saved)); /* cache trouble is a warning, not news */
	for (size_t i = 0; i < rt->n_programs; i++) {
		rt_program *p = &rt->programs[i];
		if (!p->unsaved_key)
			continue;
		if (rt->cache_dir)
			save_binary(rt, p->program, p->unsaved_key);
		free(p->unsaved_key);
		p->unsaved_key = NULL;
	}
	rt->unsaved = 0;
	cu_error_restore(saved);
}

void rt_cache_keep_only(rt_ctx *rt, const cl_program *keep, size_t n)
{
	for (size_t i = 0; i < rt->n_programs; i++) {
		rt_program *p = &rt->programs[i];
		size_t k = 0;
		if (!p->unsaved_key)
			continue;
		while (k < n && keep[k] != p->program)
			k++;
		if (k < n)
			continue;
		free(p->unsaved_key);
		p->unsaved_key = NULL;
		rt->unsaved--;
	}
}

/* clBuildProgram with the compiler's warnings off (-w): the library never
 * prints, and some drivers write their compiler's diagnostics to stderr
 * (PoCL on AVX2 hosts: "N warnings generated." for kernels that are clean
 * under clang -Wall, from its own passes). Errors still reach the build log. */
static cl_int build_program(rt_ctx *rt, cl_program prog, const char *options)
{
	char opts[1024];
	int n = snprintf(opts, sizeof(opts), "%s -w", options);
	if (n < 0 || (size_t)n >= sizeof(opts))
		return clBuildProgram(prog, 1, &rt->device, options, NULL, NULL);
	return clBuildProgram(prog, 1, &rt->device, opts, NULL, NULL);
}

static cl_program from_binary(rt_ctx *rt, const unsigned char *bin, size_t len,
			      const char *options)
{
	cl_int err, bstatus = CL_SUCCESS;
	cl_program prog = clCreateProgramWithBinary(rt->context, 1, &rt->device, &len, &bin,
						    &bstatus, &err);
	if (!prog || err != CL_SUCCESS || bstatus != CL_SUCCESS) {
		if (prog)
			clReleaseProgram(prog);
		return NULL;
	}
	if (build_program(rt, prog, options) != CL_SUCCESS || create_all_kernels(prog) != CL_SUCCESS) {
		clReleaseProgram(prog);
		return NULL;
	}
	return prog;
}

clunet_status rt_program_get(rt_ctx *rt, const char *source, const char *options,
			     cl_program *out)
{
	char *text = NULL, *key = NULL;
	size_t len;
	unsigned char *bin = NULL;
	size_t bin_len = 0;
	cl_program prog = NULL;
	cl_int err;
	clunet_status st;
	rt_program *grown;
	int from_cache = 0;

	for (size_t i = 0; i < rt->n_programs; i++) {
		if (strcmp(rt->programs[i].source, source) == 0 &&
		    strcmp(rt->programs[i].options, options) == 0) {
			*out = rt->programs[i].program;
			return CLUNET_OK;
		}
	}
	st = rt_source(rt, source, &text, &len);
	if (st)
		return st;
	key = cache_key(rt, source, text, len, options);
	if (!key) {
		free(text);
		return CLUNET_ERR_HOST_MEMORY;
	}
	rt_cache_load(rt, key, &bin, &bin_len);
	if (bin) {
		prog = from_binary(rt, bin, bin_len, options);
		free(bin);
		if (prog) {
			from_cache = 1;
			rt->cache_hits++;
			cu_logf(&rt->log, CLUNET_LOG_DEBUG, "program cache: hit cl/%s [%s]", source,
				options);
		} else {
			cu_logf(&rt->log, CLUNET_LOG_DEBUG,
				"program cache: cl/%s [%s]: cached binary rejected by the driver, "
				"rebuilding", source, options);
		}
	}
	if (!prog) {
		const char *srcp = text;
		rt->cache_misses++;
		if (rt->log.debug_cache)
			cu_logf(&rt->log, CLUNET_LOG_DEBUG, "program cache: miss cl/%s [%s]", source,
				options);
		prog = clCreateProgramWithSource(rt->context, 1, &srcp, &len, &err);
		if (!prog) {
			st = rt_cl_fail(err, "clCreateProgramWithSource", source);
			goto out;
		}
		err = build_program(rt, prog, options);
		if (err != CL_SUCCESS) {
			st = build_log_fail(rt, prog, source, options, err);
			clReleaseProgram(prog);
			goto out;
		}
		err = create_all_kernels(prog);
		if (err != CL_SUCCESS) {
			st = rt_cl_fail(err, "clCreateKernelsInProgram", source);
			clReleaseProgram(prog);
			goto out;
		}
	}
	grown = cu_realloc(rt->programs, (rt->n_programs + 1) * sizeof(rt_program));
	if (!grown) {
		clReleaseProgram(prog);
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	rt->programs = grown;
	grown[rt->n_programs].source = cu_strdup(source);
	grown[rt->n_programs].options = cu_strdup(options);
	grown[rt->n_programs].program = prog;
	grown[rt->n_programs].unsaved_key = NULL;
	if (!grown[rt->n_programs].source || !grown[rt->n_programs].options) {
		free(grown[rt->n_programs].source);
		free(grown[rt->n_programs].options);
		clReleaseProgram(prog);
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	if (!from_cache && rt->cache_dir) { /* built from source: save after its first launches */
		grown[rt->n_programs].unsaved_key = key;
		key = NULL;
		rt->unsaved++;
	}
	rt->n_programs++;
	*out = prog;
out:
	free(text);
	free(key);
	return st;
}

clunet_status rt_kernel_create(rt_ctx *rt, const char *source, const char *options,
			       const char *kernel, cl_kernel *out)
{
	cl_program prog;
	cl_int err;
	clunet_status st = rt_program_get(rt, source, options, &prog);
	if (st)
		return st;
	*out = clCreateKernel(prog, kernel, &err);
	if (!*out)
		return rt_cl_fail(err, "clCreateKernel", kernel);
	return CLUNET_OK;
}

clunet_status rt_alloc(rt_ctx *rt, size_t bytes, const char *what, cl_mem *out)
{
	cl_int err;
	if (bytes == 0)
		bytes = 4;
	if (bytes > rt->info.max_alloc_bytes)
		return cu_fail(CLUNET_ERR_DEVICE_MEMORY,
			       "%s: %zu bytes exceed the device's largest allocation (%llu bytes)",
			       what, bytes, (unsigned long long)rt->info.max_alloc_bytes);
	*out = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
	if (!*out)
		return rt_cl_fail(err, "clCreateBuffer", what);
	return CLUNET_OK;
}

clunet_status rt_alloc_large(rt_ctx *rt, size_t bytes, const char *what, cl_mem *out)
{
	const char *e = getenv("CLUNET_HUGEPAGES");
#if defined(MADV_HUGEPAGE)
	int force = e && !strcmp(e, "1"), off = e && !strcmp(e, "0");
	if (rt->is_cpu && rt->host_unified && (bytes >= RT_HUGE_PAGE || force) && !off) {
		/* 2 MiB aligned: over-map by a huge page, trim both ends */
		size_t len = (bytes + RT_HUGE_PAGE - 1) / RT_HUGE_PAGE * RT_HUGE_PAGE;
		char *m = mmap(NULL, len + RT_HUGE_PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED) {
			uintptr_t a = ((uintptr_t)m + RT_HUGE_PAGE - 1) & ~(uintptr_t)(RT_HUGE_PAGE - 1);
			char *al = (char *)a;
			cl_int err;
			if (al > m)
				munmap(m, (size_t)(al - m));
			if (al + len < m + len + RT_HUGE_PAGE)
				munmap(al + len, (size_t)(m + len + RT_HUGE_PAGE - (al + len)));
			madvise(al, len, MADV_HUGEPAGE); /* a hint: 4 KiB pages if refused */
			*out = clCreateBuffer(rt->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes,
					      al, &err);
			if (*out)
				return CLUNET_OK;
			munmap(al, len); /* the driver refused the pointer: its own memory */
		}
	}
#else
	(void)e;
#endif
	return rt_alloc(rt, bytes, what, out);
}

void rt_free_large(cl_mem mem)
{
	cl_mem_flags flags = 0;
	void *host = NULL;
	size_t bytes = 0;
	if (!mem)
		return;
	/* a buffer over host memory is over rt_alloc_large's own mapping */
	if (clGetMemObjectInfo(mem, CL_MEM_FLAGS, sizeof(flags), &flags, NULL) != CL_SUCCESS ||
	    !(flags & CL_MEM_USE_HOST_PTR) ||
	    clGetMemObjectInfo(mem, CL_MEM_HOST_PTR, sizeof(host), &host, NULL) != CL_SUCCESS ||
	    clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof(bytes), &bytes, NULL) != CL_SUCCESS)
		host = NULL;
	clReleaseMemObject(mem);
#if defined(MADV_HUGEPAGE)
	if (host)
		munmap(host, (bytes + RT_HUGE_PAGE - 1) / RT_HUGE_PAGE * RT_HUGE_PAGE);
#endif
}

/* One shape of the FMA loop (cl/peak.cl): the best of a few launches. */
static clunet_status peak_shape(rt_ctx *rt, int pw, int ch, double *gflops)
{
	cl_kernel k = NULL;
	cl_mem out = NULL;
	size_t global = (size_t)rt->info.compute_units * 64;
	cl_int iters = 16384 * 8 / ch * 16 / pw, err;
	char opts[64];
	double best = 0;
	clunet_status st;
	snprintf(opts, sizeof(opts), "-cl-std=CL1.2 -DPW=%d -DCH=%d", pw, ch);
	st = rt_kernel_create(rt, "peak.cl", opts, "fma_peak", &k);
	if (st)
		return st;
	st = rt_alloc(rt, global * 4, "peak output", &out);
	if (st)
		goto out;
	err = clSetKernelArg(k, 0, sizeof(cl_mem), &out);
	if (err == CL_SUCCESS)
		err = clSetKernelArg(k, 1, sizeof(cl_int), &iters);
	for (int rep = 0; rep < 5 && err == CL_SUCCESS; rep++) {
		double t0 = cu_now_seconds(), dt;
		err = clEnqueueNDRangeKernel(rt->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL);
		if (err == CL_SUCCESS)
			err = clFinish(rt->queue);
		dt = cu_now_seconds() - t0;
		if (rep > 0 && dt > 0) { /* the first launch pays for compilation */
			double g = (double)global * iters * ch * pw * 2 / dt * 1e-9;
			if (g > best)
				best = g;
		}
	}
	if (err != CL_SUCCESS)
		st = rt_cl_fail(err, "clEnqueueNDRangeKernel", "fma_peak");
	*gflops = best;
out:
	if (out)
		clReleaseMemObject(out);
	clReleaseKernel(k);
	return st;
}

clunet_status clunet_context_measure_peak(clunet_context_t *rt, double *gflops)
{
	/* float16 chains (AVX-512's registers) and float8 ones (AVX2's): the peak
	 * is the faster of the two, whatever the device's register file */
	static const int shapes[][2] = { { 16, 8 }, { 8, 12 } };
	double best = 0;
	clunet_status st = CLUNET_OK;
	if (!rt || !gflops)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_context_measure_peak: NULL argument");
	for (size_t i = 0; i < CU_ARRAY_LEN(shapes) && !st; i++) {
		double g = 0;
		st = peak_shape(rt, shapes[i][0], shapes[i][1], &g);
		if (g > best)
			best = g;
	}
	if (st)
		return st;
	rt_cache_flush(rt);
	*gflops = best;
	return CLUNET_OK;
}
