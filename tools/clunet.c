/* The clunet command line, built only on the public API (include/clunet.h).
 *
 *   clunet info
 *   clunet run   --model DIR --inputs IN.safetensors --output OUT.safetensors
 *   clunet bench --model DIR [--batch N --height H --width W] [--runs N] [--json]
 *   clunet cache path|list|clear
 *
 * Common options: --device D, --cache-dir P, --no-cache. Errors are one line
 * on stderr and a non-zero exit status. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clunet.h"

typedef struct opts {
	const char *model, *inputs, *output, *device, *cache_dir, *variant;
	int no_cache, json, runs, warmup, batch, height, width, length, frames, verbose;
	const char *freeu, *lora, *attention;
	int fuse_lora, fused_qkv, attention_slice;
	int list; /* tune --list */
	int runs_given;
	int clblast_candidates, clblast_limit, clblast_given; /* tune */
} opts;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: clunet <command> [options]\n"
		"\n"
		"commands:\n"
		"  info                       list OpenCL platforms and devices\n"
		"  run    --model DIR --inputs IN.safetensors --output OUT.safetensors\n"
		"                             one forward pass; inputs are named after the\n"
		"                             arguments of diffusers' forward()\n"
		"  bench  --model DIR [--batch N] [--height H] [--width W] [--length L]\n"
		"         (--length: 1-D length, or encoder tokens of a conditional model)\n"
		"         [--runs N] [--warmup N] [--json]\n"
		"                             median forward time, GFLOP/s, peak memory and a\n"
		"                             per-op table; a folder with only config.json runs\n"
		"                             with seeded random weights\n"
		"  tune   MODEL_DIR [--batch N] [--height H] [--width W] [--length L] [--runs N]\n"
		"         [--clblast-candidates N] [--clblast-limit SECONDS]\n"
		"                             try every op's implementation choices on this\n"
		"                             device, keep the fastest correct ones in the\n"
		"                             tuning database (used by every later plan); where\n"
		"                             GEMMs may run on CLBlast, also N (12) of CLBlast's\n"
		"                             Xgemm parameter sets, each in its own process\n"
		"                             (0: none), killed past the limit (300 s)\n"
		"  tune   --list              what the database holds for the device\n"
		"  cache  path|list|clear     the compiled-program cache\n"
		"\n"
		"options:\n"
		"  --device D      \"P:D\", a device index, or a name substring ($CLUNET_DEVICE)\n"
		"  --cache-dir P   program cache folder ($CLUNET_CACHE_DIR)\n"
		"  --no-cache      neither read nor write the program cache\n"
		"  --variant V     weight file variant (\"fp16\": diffusion_pytorch_model.fp16.safetensors)\n"
		"  -v              print cache and build messages\n"
		"\n"
		"model methods (run and bench):\n"
		"  --freeu S1,S2,B1,B2[,fft]  FreeU (diffusers' enable_freeu); \"fft\" filters through clFFT\n"
		"  --lora FILE[:SCALE]        a LoRA (diffusers, PEFT or kohya keys) at SCALE (1)\n"
		"  --fuse-lora                fold the LoRA into the weights (fuse_lora)\n"
		"  --attention-slice N        attention in slices of N heads (set_attention_slice)\n"
		"  --fused-qkv                one projection for q, k, v (fuse_qkv_projections)\n"
		"  --attention K              plain | memory-efficient | auto (default)\n");
}

static int fail(const char *what)
{
	fprintf(stderr, "clunet: %s%s%s\n", what ? what : "", what ? ": " : "", clunet_last_error());
	return 1;
}

static void log_to_stderr(void *user, clunet_log_level level, const char *msg)
{
	int verbose = *(int *)user;
	if (level == CLUNET_LOG_WARNING)
		fprintf(stderr, "clunet: warning: %s\n", msg);
	else if (verbose)
		fprintf(stderr, "clunet: %s\n", msg);
}

static int parse_int(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < 0 || v > 1 << 30)
		return 0;
	*out = (int)v;
	return 1;
}

static int option_takes_value(const char *a)
{
	return strcmp(a, "--no-cache") && strcmp(a, "--json") && strcmp(a, "-v") &&
	       strcmp(a, "--verbose") && strcmp(a, "--fuse-lora") && strcmp(a, "--fused-qkv") &&
	       strcmp(a, "--list");
}

static int parse_args(int argc, char **argv, opts *o)
{
	memset(o, 0, sizeof(*o));
	o->runs = 5;
	o->warmup = 1;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int *num = NULL;
		const char **str = NULL;
		if (!strcmp(a, "--no-cache")) { o->no_cache = 1; continue; }
		if (!strcmp(a, "--json")) { o->json = 1; continue; }
		if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { o->verbose = 1; continue; }
		if (!strcmp(a, "--fuse-lora")) { o->fuse_lora = 1; continue; }
		if (!strcmp(a, "--fused-qkv")) { o->fused_qkv = 1; continue; }
		if (!strcmp(a, "--list")) { o->list = 1; continue; }
		if (!strcmp(argv[1], "tune") && a[0] != '-' && !o->model) { o->model = a; continue; }
		if (!strcmp(a, "--model")) str = &o->model;
		else if (!strcmp(a, "--inputs")) str = &o->inputs;
		else if (!strcmp(a, "--output")) str = &o->output;
		else if (!strcmp(a, "--device")) str = &o->device;
		else if (!strcmp(a, "--cache-dir")) str = &o->cache_dir;
		else if (!strcmp(a, "--variant")) str = &o->variant;
		else if (!strcmp(a, "--freeu")) str = &o->freeu;
		else if (!strcmp(a, "--lora")) str = &o->lora;
		else if (!strcmp(a, "--attention")) str = &o->attention;
		else if (!strcmp(a, "--attention-slice")) num = &o->attention_slice;
		else if (!strcmp(a, "--runs")) { num = &o->runs; o->runs_given = 1; }
		else if (!strcmp(a, "--warmup")) num = &o->warmup;
		else if (!strcmp(a, "--batch")) num = &o->batch;
		else if (!strcmp(a, "--height")) num = &o->height;
		else if (!strcmp(a, "--width")) num = &o->width;
		else if (!strcmp(a, "--length")) num = &o->length;
		else if (!strcmp(a, "--frames")) num = &o->frames;
		else if (!strcmp(a, "--clblast-candidates")) { num = &o->clblast_candidates; o->clblast_given = 1; }
		else if (!strcmp(a, "--clblast-limit")) num = &o->clblast_limit;
		else {
			fprintf(stderr, "clunet: unknown option '%s' (see clunet --help)\n", a);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "clunet: option '%s' needs a value\n", a);
			return 0;
		}
		if (str)
			*str = v;
		else if (!parse_int(v, num)) {
			fprintf(stderr, "clunet: option '%s': '%s' is not a non-negative integer\n", a, v);
			return 0;
		}
		i++;
	}
	return 1;
}

static int make_context(const opts *o, int profiling, clunet_context_t **ctx)
{
	static int verbose;
	clunet_context_options co;
	clunet_context_options_init(&co);
	verbose = o->verbose;
	co.device = o->device;
	co.cache_dir = o->cache_dir;
	co.no_cache = o->no_cache;
	co.profiling = profiling;
	co.log = log_to_stderr;
	co.log_user = &verbose;
	if (clunet_context_create(&co, ctx) != CLUNET_OK)
		return fail("cannot open the OpenCL device");
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ info */

static void human(uint64_t bytes, char *buf, size_t cap)
{
	if (bytes >= (1ull << 30))
		snprintf(buf, cap, "%.1f GiB", (double)bytes / (1ull << 30));
	else
		snprintf(buf, cap, "%.1f MiB", (double)bytes / (1ull << 20));
}

static int cmd_info(void)
{
	clunet_device_info devs[64];
	size_t n = 0;
	if (clunet_list_devices(devs, 64, &n) != CLUNET_OK)
		return fail("info");
	for (size_t i = 0; i < n && i < 64; i++) {
		const clunet_device_info *d = &devs[i];
		char gm[32], ma[32];
		human(d->global_mem_bytes, gm, sizeof(gm));
		human(d->max_alloc_bytes, ma, sizeof(ma));
		printf("device %d:%d  %s\n", d->platform_index, d->device_index, d->name);
		printf("  platform      %s (%s)\n", d->platform, d->platform_version);
		printf("  type          %s\n", d->type);
		printf("  vendor        %s\n", d->vendor);
		printf("  version       %s\n", d->version);
		printf("  driver        %s\n", d->driver);
		printf("  compute units %u\n", d->compute_units);
		printf("  memory        %s (largest allocation %s)\n", gm, ma);
		printf("  local memory  %llu KiB\n", (unsigned long long)(d->local_mem_bytes >> 10));
		printf("  fp16          %s\n", d->fp16 ? "yes" : "no (half storage only)");
		printf("  fp64          %s\n", d->fp64 ? "yes" : "no");
	}
	return 0;
}

/* ------------------------------------------------------------ model methods */

/* --freeu, --lora, --fuse-lora, --attention*: 0 on success. */
static int apply_methods(const opts *o, clunet_model_t *model)
{
	if (o->freeu) {
		clunet_freeu f;
		char tail[16] = "";
		int k;
		memset(&f, 0, sizeof(f));
		k = sscanf(o->freeu, "%f,%f,%f,%f,%15s", &f.s1, &f.s2, &f.b1, &f.b2, tail);
		if (k < 4 || (k == 5 && strcmp(tail, "fft"))) {
			fprintf(stderr, "clunet: --freeu '%s': expected S1,S2,B1,B2 or S1,S2,B1,B2,fft "
					"(e.g. 0.9,0.2,1.5,1.6)\n", o->freeu);
			return 2;
		}
		f.use_fft = k == 5;
		if (clunet_model_set_freeu(model, &f) != CLUNET_OK)
			return fail("--freeu");
	}
	if (o->lora) {
		char path[4096];
		char *colon, *end;
		clunet_lora_options lo;
		clunet_lora_options_init(&lo);
		snprintf(path, sizeof(path), "%s", o->lora);
		colon = strrchr(path, ':');
		if (colon) {
			float v = strtof(colon + 1, &end);
			if (end != colon + 1 && !*end) {
				lo.scale = v;
				*colon = 0;
			}
		}
		lo.fuse = o->fuse_lora;
		if (clunet_model_load_lora(model, path, &lo) != CLUNET_OK)
			return fail("--lora");
	} else if (o->fuse_lora) {
		fprintf(stderr, "clunet: --fuse-lora needs --lora FILE\n");
		return 2;
	}
	if (o->attention || o->attention_slice || o->fused_qkv) {
		clunet_attention_options ao;
		clunet_attention_options_init(&ao);
		ao.slice_size = o->attention_slice;
		ao.fused_qkv = o->fused_qkv;
		if (o->attention && !strcmp(o->attention, "plain"))
			ao.kernel = 0;
		else if (o->attention && !strcmp(o->attention, "memory-efficient"))
			ao.kernel = 1;
		else if (o->attention && strcmp(o->attention, "auto")) {
			fprintf(stderr, "clunet: --attention '%s': expected plain, memory-efficient or "
					"auto\n", o->attention);
			return 2;
		}
		if (clunet_model_set_attention(model, &ao) != CLUNET_OK)
			return fail("--attention");
	}
	return 0;
}

/* ------------------------------------------------------------ run */

static int cmd_run(const opts *o)
{
	clunet_context_t *ctx = NULL;
	clunet_model_t *model = NULL;
	clunet_tensor *in = NULL;
	size_t n = 0;
	clunet_output out;
	clunet_tensor t;
	clunet_device_info dev;
	clunet_model_options mo;
	double t0;
	int rc = 1;
	if (!o->model || !o->inputs || !o->output) {
		fprintf(stderr, "clunet: run needs --model DIR --inputs IN.safetensors --output "
				"OUT.safetensors\n");
		return 2;
	}
	if (clunet_tensors_read(o->inputs, &in, &n) != CLUNET_OK)
		return fail("cannot read the inputs");
	if (make_context(o, 0, &ctx))
		goto out;
	clunet_context_device(ctx, &dev);
	clunet_model_options_init(&mo);
	mo.variant = o->variant;
	if (clunet_model_load(ctx, o->model, &mo, &model) != CLUNET_OK) {
		fail("cannot load the model");
		goto out;
	}
	if ((rc = apply_methods(o, model)) != 0)
		goto out;
	rc = 1;
	t0 = now();
	if (clunet_model_forward(model, in, n, &out) != CLUNET_OK) {
		fail("forward failed");
		goto out;
	}
	t0 = now() - t0;
	memset(&t, 0, sizeof(t));
	t.name = "sample";
	t.dtype = CLUNET_F32;
	t.ndim = out.ndim;
	memcpy(t.shape, out.shape, sizeof(t.shape));
	t.data = out.data;
	if (clunet_tensors_write(o->output, &t, 1) != CLUNET_OK) {
		fail("cannot write the output");
		goto out;
	}
	printf("%s: wrote sample [", clunet_model_class(model));
	for (int d = 0; d < out.ndim; d++)
		printf("%s%lld", d ? ", " : "", (long long)out.shape[d]);
	printf("] to %s (forward %.3f s on %s)\n", o->output, t0, dev.name);
	rc = 0;
out:
	clunet_model_free(model);
	clunet_context_destroy(ctx);
	clunet_tensors_free(in, n);
	return rc;
}

/* ------------------------------------------------------------ bench */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* bench and tune: the model (seeded random weights for a config-only folder),
 * its methods, and example inputs of the asked shape. 0 on success, else the
 * exit status (the failure printed). */
static int load_with_inputs(const opts *o, clunet_context_t *ctx, clunet_model_t **model,
			    const clunet_tensor **in, size_t *n_in)
{
	clunet_model_options mo;
	clunet_example_shape shape;
	int rc;
	clunet_model_options_init(&mo);
	mo.allow_random_weights = 1;
	mo.random_seed = 1234;
	mo.variant = o->variant;
	if (clunet_model_load(ctx, o->model, &mo, model) != CLUNET_OK)
		return fail("cannot load the model");
	if ((rc = apply_methods(o, *model)) != 0)
		return rc;
	memset(&shape, 0, sizeof(shape));
	shape.batch = o->batch;
	shape.height = o->height;
	shape.width = o->width;
	shape.length = o->length;
	shape.frames = o->frames;
	shape.seed = 42;
	if (clunet_model_example_inputs(*model, &shape, in, n_in) != CLUNET_OK)
		return fail("cannot plan the forward"); /* the inputs' shape is refused */
	return 0;
}

/* Measures the device's FMA peak and keeps the higher of it and *peak. */
static int probe_peak(clunet_context_t *ctx, double *peak)
{
	double g = 0;
	if (clunet_context_measure_peak(ctx, &g) != CLUNET_OK)
		return fail("cannot measure the device peak");
	if (g > *peak)
		*peak = g;
	return 0;
}

static int cmd_bench(const opts *o)
{
	clunet_context_t *ctx = NULL;
	clunet_model_t *model = NULL;
	clunet_plan_info info;
	clunet_device_info dev;
	const clunet_tensor *in;
	const clunet_op_profile *ops = NULL;
	size_t n_in, n_ops = 0;
	clunet_output out;
	double *times = NULL, t0, ctx_s, load_s, plan_s, first_s, median, peak = 0;
	int rc = 1, runs = o->runs > 0 ? o->runs : 1;

	if (!o->model) {
		fprintf(stderr, "clunet: bench needs --model DIR\n");
		return 2;
	}
	t0 = now();
	if (make_context(o, 1, &ctx))
		return 1;
	ctx_s = now() - t0;
	clunet_context_device(ctx, &dev);
	t0 = now();
	if ((rc = load_with_inputs(o, ctx, &model, &in, &n_in)) != 0)
		goto out;
	rc = 1;
	load_s = now() - t0;
	t0 = now();
	if (clunet_model_plan(model, in, n_in, &info) != CLUNET_OK) {
		fail("cannot plan the forward");
		goto out;
	}
	plan_s = now() - t0;
	t0 = now();
	if (clunet_model_forward(model, in, n_in, &out) != CLUNET_OK) {
		fail("forward failed");
		goto out;
	}
	first_s = now() - t0;
	for (int i = 1; i < o->warmup; i++)
		if (clunet_model_forward(model, in, n_in, &out) != CLUNET_OK) {
			fail("forward failed");
			goto out;
		}
	if (probe_peak(ctx, &peak))
		goto out;
	times = calloc((size_t)runs, sizeof(double));
	if (!times)
		goto out;
	for (int i = 0; i < runs; i++) {
		t0 = now();
		if (clunet_model_forward(model, in, n_in, &out) != CLUNET_OK) {
			fail("forward failed");
			goto out;
		}
		times[i] = now() - t0;
	}
	if (probe_peak(ctx, &peak)) /* again: the machine's speed drifts */
		goto out;
	clunet_model_profile(model, &ops, &n_ops);
	qsort(times, (size_t)runs, sizeof(double), cmp_double);
	median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
	if (o->json) {
		printf("{\"model\": ");
		json_str(o->model);
		printf(", \"class\": ");
		json_str(clunet_model_class(model));
		printf(", \"device\": ");
		json_str(dev.name);
		printf(", \"inputs\": {");
		for (size_t i = 0; i < n_in; i++) {
			printf("%s", i ? ", " : "");
			json_str(in[i].name);
			printf(": [");
			for (int d = 0; d < in[i].ndim; d++)
				printf("%s%lld", d ? ", " : "", (long long)in[i].shape[d]);
			printf("]");
		}
		printf("}, \"runs\": %d, \"median_s\": %.6f, \"min_s\": %.6f, \"max_s\": %.6f, "
		       "\"first_forward_s\": %.6f, \"load_s\": %.6f, \"context_s\": %.6f, "
		       "\"plan_s\": %.6f, \"start_s\": %.6f, \"gflop\": %.6f, "
		       "\"gflops\": %.3f, \"device_peak_gflops\": %.3f, \"percent_of_peak\": %.2f, "
		       "\"peak_activation_bytes\": %llu, \"weight_bytes\": %llu, \"n_ops\": %zu, "
		       "\"ops\": [",
		       runs, median, times[0], times[runs - 1], first_s, load_s, ctx_s, plan_s,
		       ctx_s + load_s + plan_s + first_s - times[0], info.gflop,
		       info.gflop / median, peak, 100.0 * info.gflop / median / peak,
		       (unsigned long long)info.peak_activation_bytes,
		       (unsigned long long)info.weight_bytes, info.n_ops);
		for (size_t i = 0; i < n_ops; i++) {
			printf("%s{\"name\": ", i ? ", " : "");
			json_str(ops[i].name);
			printf(", \"count\": %zu, \"total_s\": %.6f, \"gflop\": %.6f}", ops[i].count,
			       ops[i].seconds, ops[i].gflop);
		}
		printf("]}\n");
	} else {
		double opsum = 0;
		printf("model            %s (%s)\n", o->model, clunet_model_class(model));
		printf("device           %s\n", dev.name);
		printf("inputs          ");
		for (size_t i = 0; i < n_in; i++) {
			printf(" %s[", in[i].name);
			for (int d = 0; d < in[i].ndim; d++)
				printf("%s%lld", d ? "," : "", (long long)in[i].shape[d]);
			printf("]");
		}
		printf("\nstart            %.3f s: context %.3f s, load %.3f s, plan %.3f s, first "
		       "forward %.3f s (%.3f s over the fastest warm one: kernel builds)\n",
		       ctx_s + load_s + plan_s + first_s - times[0], ctx_s, load_s, plan_s, first_s,
		       first_s - times[0]);
		printf("forward          median %.4f s over %d runs (min %.4f, max %.4f)\n", median,
		       runs, times[0], times[runs - 1]);
		printf("work             %.3f GFLOP -> %.1f GFLOP/s = %.1f %% of the device peak "
		       "%.1f GFLOP/s (the higher of probes before and after the runs)\n", info.gflop,
		       info.gflop / median, 100.0 * info.gflop / median / peak, peak);
		printf("memory           peak activations %.2f MiB, weights %.2f MiB, %zu ops\n",
		       (double)info.peak_activation_bytes / (1 << 20),
		       (double)info.weight_bytes / (1 << 20), info.n_ops);
		for (size_t i = 0; i < n_ops; i++)
			opsum += ops[i].seconds;
		printf("\n%-22s %6s %10s %7s %10s %7s\n", "op (last run)", "count", "time ms", "share",
		       "GFLOP/s", "% peak");
		for (size_t i = 0; i < n_ops; i++) {
			double gf = ops[i].seconds > 0 ? ops[i].gflop / ops[i].seconds : 0;
			printf("%-22s %6zu %10.3f %6.1f%% %10.1f %6.1f%%\n", ops[i].name, ops[i].count,
			       ops[i].seconds * 1e3, opsum > 0 ? 100 * ops[i].seconds / opsum : 0, gf,
			       peak > 0 ? 100 * gf / peak : 0);
		}
	}
	rc = 0;
out:
	free(times);
	clunet_model_free(model);
	clunet_context_destroy(ctx);
	return rc;
}

/* ------------------------------------------------------------ tune */

static void tune_progress(void *user, size_t op, size_t n_ops, const char *key, const char *choice,
			  double def, double best)
{
	(void)user;
	if (!(best < INFINITY)) /* a rejected CLBlast candidate: choice says why */
		printf("  %4zu/%zu  %-52s rejected: %s\n", op + 1, n_ops, key, choice);
	else
		printf("  %4zu/%zu  %-52s %-14s %9.3f ms -> %9.3f ms (%.2fx)\n", op + 1, n_ops, key,
		       choice, def * 1e3, best * 1e3, best > 0 ? def / best : 0);
	fflush(stdout);
}

static int cmd_tune(const opts *o)
{
	clunet_context_t *ctx = NULL;
	clunet_model_t *model = NULL;
	clunet_tune_options to;
	clunet_tune_report rep;
	clunet_device_info dev;
	const clunet_tensor *in;
	size_t n_in;
	int rc = 1;
	if (!o->list && !o->model) {
		fprintf(stderr, "clunet: tune needs MODEL_DIR (or --list)\n");
		return 2;
	}
	if (make_context(o, 1, &ctx))
		return 1;
	clunet_context_device(ctx, &dev);
	if (o->list) {
		size_t n = clunet_tune_count(ctx);
		printf("tuning database for %s (driver %s): %zu entr%s\n", dev.name, dev.driver, n,
		       n == 1 ? "y" : "ies");
		for (size_t i = 0; i < n; i++) {
			const char *k, *v;
			if (clunet_tune_entry(ctx, i, &k, &v) == CLUNET_OK)
				printf("  %-60s %s\n", k, v);
		}
		rc = 0;
		goto out;
	}
	if ((rc = load_with_inputs(o, ctx, &model, &in, &n_in)) != 0)
		goto out;
	rc = 1;
	clunet_tune_options_init(&to);
	to.runs = o->runs_given ? o->runs : 3;
	to.progress = tune_progress;
	to.worker = "/proc/self/exe"; /* this program, as clunet_tune_worker_main */
	to.clblast_candidates = o->clblast_given ? (o->clblast_candidates ? o->clblast_candidates : -1) : 0;
	to.clblast_limit_seconds = o->clblast_limit;
	printf("tuning %s on %s (driver %s)\n", o->model, dev.name, dev.driver);
	if (clunet_model_tune(model, in, n_in, &to, &rep) != CLUNET_OK) {
		fail("tuning failed");
		goto out;
	}
	printf("%zu op shapes, %zu candidates (%zu wrong or unbuildable, %zu over the time "
	       "limit; %zu first-pass winners not confirmed)\n",
	       rep.shapes, rep.candidates, rep.rejected, rep.too_slow, rep.unconfirmed);
	printf("tuned ops of one forward: %.3f s with defaults -> %.3f s tuned (%.2fx)\n",
	       rep.default_seconds, rep.tuned_seconds,
	       rep.tuned_seconds > 0 ? rep.default_seconds / rep.tuned_seconds : 0);
	if (rep.clblast_candidates)
		printf("CLBlast Xgemm: %zu GEMM shapes, %zu parameter sets (%zu wrong, %zu too slow, "
		       "%zu crashed, hung or refused); %.3f s stock -> %.3f s (%.2fx): %s\n",
		       rep.clblast_shapes, rep.clblast_candidates, rep.clblast_wrong,
		       rep.clblast_too_slow, rep.clblast_failed, rep.clblast_default_seconds,
		       rep.clblast_tuned_seconds,
		       rep.clblast_tuned_seconds > 0
			       ? rep.clblast_default_seconds / rep.clblast_tuned_seconds : 0,
		       rep.clblast_choice);
	else if (rep.clblast_shapes == 0)
		printf("CLBlast Xgemm: no GEMM of this plan runs on CLBlast on this device\n");
	rc = 0;
out:
	clunet_model_free(model);
	clunet_context_destroy(ctx);
	return rc;
}

/* ------------------------------------------------------------ cache */

static void print_entry(void *user, const char *dev, const char *file, uint64_t bytes,
			int64_t mtime)
{
	char when[64];
	time_t t = (time_t)mtime;
	struct tm tm;
	(*(uint64_t *)user) += bytes;
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	printf("%10llu  %s  %s/%s\n", (unsigned long long)bytes, when, dev, file);
}

static int cmd_cache(const char *sub, const opts *o)
{
	char dir[4096];
	if (o->cache_dir)
		snprintf(dir, sizeof(dir), "%s", o->cache_dir);
	else if (clunet_cache_default_dir(dir, sizeof(dir)) != CLUNET_OK)
		return fail("cache");
	if (!strcmp(sub, "path")) {
		printf("%s\n", dir);
		return 0;
	}
	if (!strcmp(sub, "list")) {
		uint64_t total = 0;
		if (clunet_cache_list(dir, print_entry, &total) != CLUNET_OK)
			return fail("cache list");
		printf("%10llu  bytes in %s\n", (unsigned long long)total, dir);
		return 0;
	}
	if (!strcmp(sub, "clear")) {
		size_t removed = 0;
		clunet_status st = clunet_cache_clear(dir, &removed);
		printf("removed %zu entr%s from %s\n", removed, removed == 1 ? "y" : "ies", dir);
		return st == CLUNET_OK ? 0 : fail("cache clear");
	}
	fprintf(stderr, "clunet: cache takes path, list or clear (got '%s')\n", sub);
	return 2;
}

int main(int argc, char **argv)
{
	opts o;
	const char *cmd = argc > 1 ? argv[1] : "";
	if (!strcmp(cmd, CLUNET_TUNE_WORKER_ARG)) /* started by `clunet tune` */
		return clunet_tune_worker_main(argc, argv);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "cache")) {
		/* the subcommand is the first word that is neither an option nor an
		 * option's value, before or after the options */
		const char *sub = NULL;
		char *rest[64];
		int nrest = 0;
		for (int i = 0; i < argc && nrest < 64; i++) {
			int value = i > 2 && argv[i - 1][0] == '-' && option_takes_value(argv[i - 1]);
			if (i >= 2 && !sub && argv[i][0] != '-' && !value)
				sub = argv[i];
			else
				rest[nrest++] = argv[i];
		}
		if (!parse_args(nrest, rest, &o))
			return 2;
		return cmd_cache(sub ? sub : "path", &o);
	}
	if (!parse_args(argc, argv, &o))
		return 2;
	if (!strcmp(cmd, "info"))
		return cmd_info();
	if (!strcmp(cmd, "run"))
		return cmd_run(&o);
	if (!strcmp(cmd, "bench"))
		return cmd_bench(&o);
	if (!strcmp(cmd, "tune"))
		return cmd_tune(&o);
	usage(stderr);
	return 2;
}
