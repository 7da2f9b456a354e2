/* The model methods diffusers gives UNet2DConditionModel, on fixtures made
 * by diffusers: the attention choices that must not change the result
 * (slicing, fused QKV projections, the memory-efficient kernel) against the
 * plain path, the LoRA life cycle (runtime scale, fuse, unfuse, unload)
 * against the model without and with the LoRA, and the autotuner (its
 * winners give the default's result; the database is read by later
 * contexts and ignored under another driver version). */
#include "testutil.h"

#include "runtime/runtime.h" /* the program cache's counters */

#define SAME 1e-5 /* "within float rounding" */

static clunet_context_t *ctx;

typedef struct run_in {
	clunet_tensor *t;
	size_t n;
} run_in;

static int load(const char *dir, const char *name, clunet_model_t **m, run_in *in)
{
	char path[4096];
	clunet_status st;
	snprintf(path, sizeof(path), "%s/%s/inputs.safetensors", dir, name);
	st = clunet_tensors_read(path, &in->t, &in->n);
	CHECK(st == CLUNET_OK, "%s: %s", name, clunet_last_error());
	if (st)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	st = clunet_model_load(ctx, path, NULL, m);
	CHECK(st == CLUNET_OK, "%s: %s", name, clunet_last_error());
	return st == CLUNET_OK;
}

/* Runs and returns a copy of the output (n values). */
static double *run(clunet_model_t *m, const run_in *in, size_t *n, const char *what)
{
	clunet_output out;
	double *v;
	clunet_status st = clunet_model_forward(m, in->t, in->n, &out);
	CHECK(st == CLUNET_OK, "%s: forward failed: %s", what, clunet_last_error());
	if (st)
		return NULL;
	*n = 1;
	for (int i = 0; i < out.ndim; i++)
		*n *= (size_t)out.shape[i];
	v = malloc(*n * sizeof(double));
	for (size_t i = 0; i < *n; i++)
		v[i] = out.data[i];
	return v;
}

static double diff(const double *a, const double *b, size_t n)
{
	float *f = malloc(n * sizeof(float));
	double e;
	for (size_t i = 0; i < n; i++)
		f[i] = (float)a[i];
	e = tu_rel_l2(f, b, n);
	free(f);
	return e;
}

/* sliced: the model has more than one head-batch per attention, so slicing
 * must change the graph */
static void attention_choices(const char *dir, const char *name, int sliced)
{
	static const struct { const char *what; clunet_attention_options o; int graph; } cases[] = {
		{ "slice 1", { 1, 0, 0 }, 2 },
		{ "slice 3", { 3, 0, 0 }, 0 },
		{ "fused QKV", { 0, 1, 0 }, 1 },
		{ "fused QKV + slice 1", { 1, 1, 0 }, 0 },
		{ "memory-efficient kernel", { 0, 0, 1 }, 1 },
		{ "memory-efficient + fused QKV", { 0, 1, 1 }, 0 },
	};
	clunet_model_t *m = NULL;
	run_in in = { 0 };
	clunet_attention_options o;
	clunet_plan_info pi0;
	double *plain, *other;
	size_t n, n2;
	if (!load(dir, name, &m, &in))
		goto out;
	clunet_attention_options_init(&o);
	o.kernel = 0;
	CHECK(clunet_model_set_attention(m, &o) == CLUNET_OK, "%s", clunet_last_error());
	plain = run(m, &in, &n, name);
	CHECK(clunet_model_plan(m, in.t, in.n, &pi0) == CLUNET_OK, "%s", clunet_last_error());
	for (size_t i = 0; plain && i < sizeof(cases) / sizeof(cases[0]); i++) {
		double e;
		clunet_plan_info pi;
		CHECK(clunet_model_set_attention(m, &cases[i].o) == CLUNET_OK, "%s",
		      clunet_last_error());
		other = run(m, &in, &n2, cases[i].what);
		/* the choice took effect: another graph */
		CHECK(clunet_model_plan(m, in.t, in.n, &pi) == CLUNET_OK &&
			      (pi.n_ops != pi0.n_ops || pi.gflop != pi0.gflop ||
			       pi.weight_bytes != pi0.weight_bytes ||
			       pi.peak_activation_bytes != pi0.peak_activation_bytes ||
			       !cases[i].graph || (cases[i].graph == 2 && !sliced)),
		      "%s: %s built the same plan (%zu ops) as the plain path", name, cases[i].what,
		      pi0.n_ops);
		if (!other)
			continue;
		e = diff(other, plain, n);
		printf("  %-28s %-30s rel L2 %.2e from the plain path\n", name, cases[i].what, e);
		CHECK(n2 == n && e <= SAME, "%s: %s differs from the plain path by %.3e", name,
		      cases[i].what, e);
		free(other);
	}
	free(plain);
out:
	clunet_model_free(m);
	clunet_tensors_free(in.t, in.n);
}

static void lora_cycle(const char *dir)
{
	const char *name = "lora_kohya"; /* no layer that runs before the scale applies */
	char path[8192];
	clunet_model_t *m = NULL;
	run_in in = { 0 };
	clunet_lora_options lo;
	double *base = NULL, *l07 = NULL, *v = NULL;
	size_t n, n2;
	clunet_status st;
	if (!load(dir, name, &m, &in))
		goto out;
	snprintf(path, sizeof(path), "%s/%s/lora.safetensors", dir, name);
	base = run(m, &in, &n, "no LoRA");
	clunet_lora_options_init(&lo);
	lo.scale = 0.7f;
	st = clunet_model_load_lora(m, path, &lo);
	CHECK(st == CLUNET_OK, "load_lora: %s", clunet_last_error());
	l07 = run(m, &in, &n2, "LoRA 0.7");
	if (!base || !l07)
		goto out;
	CHECK(diff(l07, base, n) > 0.1, "the LoRA changes the output (%.3e)", diff(l07, base, n));
#define EXPECT(label, want, tol)                                                          \
	do {                                                                              \
		v = run(m, &in, &n2, label);                                              \
		if (v) {                                                                  \
			double e_ = diff(v, want, n);                                     \
			printf("  %-28s rel L2 %.2e\n", label, e_);                         \
			CHECK(e_ <= (tol), "%s: rel L2 %.3e", label, e_);                    \
			free(v);                                                          \
		}                                                                         \
	} while (0)
	st = clunet_model_set_lora_scale(m, 0.0f);
	CHECK(st == CLUNET_OK, "set_lora_scale: %s", clunet_last_error());
	EXPECT("LoRA at scale 0 = no LoRA", base, 1e-6);
	st = clunet_model_set_lora_scale(m, 0.7f);
	EXPECT("scale back to 0.7", l07, 0);
	st = clunet_model_fuse_lora(m, 0.7f);
	CHECK(st == CLUNET_OK, "fuse_lora: %s", clunet_last_error());
	EXPECT("fused at 0.7 = unfused", l07, SAME);
	CHECK(clunet_model_fuse_lora(m, 0.7f) != CLUNET_OK, "fusing twice is an error");
	CHECK(clunet_model_set_lora_scale(m, 0.5f) != CLUNET_OK, "scaling a fused LoRA is an error");
	st = clunet_model_unfuse_lora(m);
	CHECK(st == CLUNET_OK, "unfuse_lora: %s", clunet_last_error());
	EXPECT("unfused again", l07, SAME);
	st = clunet_model_unload_lora(m);
	CHECK(st == CLUNET_OK, "unload_lora: %s", clunet_last_error());
	EXPECT("unloaded = no LoRA", base, SAME);
	/* fuse, then unload: the weights stay fused (diffusers' fuse-and-unload) */
	lo.fuse = 1;
	st = clunet_model_load_lora(m, path, &lo);
	CHECK(st == CLUNET_OK, "load_lora(fuse): %s", clunet_last_error());
	EXPECT("loaded fused", l07, SAME);
	{ /* with fused QKV projections, built from the fused weights */
		clunet_attention_options o;
		clunet_attention_options_init(&o);
		o.fused_qkv = 1;
		clunet_model_set_attention(m, &o);
		EXPECT("fused LoRA + fused QKV", l07, SAME);
		clunet_attention_options_init(&o);
		clunet_model_set_attention(m, &o);
	}
	clunet_model_unload_lora(m);
	EXPECT("fused, then unloaded", l07, SAME);
	CHECK(clunet_model_unfuse_lora(m) != CLUNET_OK, "unfuse after unload is an error");
out:
	free(base);
	free(l07);
	clunet_model_free(m);
	clunet_tensors_free(in.t, in.n);
}

static clunet_context_t *tune_context(const char *cache)
{
	clunet_context_options o;
	clunet_context_t *c = NULL;
	clunet_context_options_init(&o);
	o.cache_dir = cache;
	o.profiling = 1;
	o.log = tu_log;
	CHECK(clunet_context_create(&o, &c) == CLUNET_OK, "%s", clunet_last_error());
	return c;
}

static double *run_in_context(clunet_context_t *c, const char *dir, const char *name,
			      size_t *n)
{
	clunet_context_t *saved = ctx;
	clunet_model_t *m = NULL;
	run_in in = { 0 };
	double *v = NULL;
	ctx = c;
	if (load(dir, name, &m, &in))
		v = run(m, &in, n, name);
	clunet_model_free(m);
	clunet_tensors_free(in.t, in.n);
	ctx = saved;
	return v;
}

static void tuning(const char *dir, const char *name)
{
	clunet_context_t *main_ctx = ctx; /* load() uses the global: restored below */
	char *cache = tu_tempdir("tune-cache"), path[4096];
	clunet_context_t *a = tune_context(cache), *b = NULL, *c = NULL;
	clunet_model_t *m = NULL;
	clunet_tune_options to;
	clunet_tune_report rep;
	run_in in = { 0 };
	double *plain = NULL, *tuned = NULL, *later = NULL;
	size_t n = 0, n2 = 0, n3 = 0;
	char *text = NULL;
	FILE *f;
	if (!a)
		goto out;
	plain = run_in_context(a, dir, name, &n);
	ctx = a;
	if (!load(dir, name, &m, &in)) {
		ctx = NULL;
		goto out;
	}
	clunet_tune_options_init(&to);
	to.runs = 1;
	CHECK(clunet_model_tune(m, in.t, in.n, &to, &rep) == CLUNET_OK, "tune: %s",
	      clunet_last_error());
	printf("  %-28s tuned %zu op shapes, %zu candidates, %zu rejected: %.3f -> %.3f ms\n", name,
	       rep.shapes, rep.candidates, rep.rejected, rep.default_seconds * 1e3,
	       rep.tuned_seconds * 1e3);
	CHECK(rep.shapes > 0 && rep.candidates >= rep.shapes, "tune: nothing was tuned");
	CHECK(rep.tuned_seconds <= rep.default_seconds * (1 + 1e-9), "tune: winners slower than "
	      "defaults (%.6f > %.6f s)", rep.tuned_seconds, rep.default_seconds);
	CHECK(clunet_tune_count(a) == rep.shapes, "database holds %zu entries, tuned %zu",
	      clunet_tune_count(a), rep.shapes);
	/* the cache got the tuned plan's programs, not every candidate's */
	CHECK(a->cache_saves < rep.candidates, "the tuner cached %u programs for %zu candidates",
	      a->cache_saves, rep.candidates);
	tuned = run(m, &in, &n2, "tuned");
	if (plain && tuned) {
		double e = diff(tuned, plain, n);
		printf("  %-28s %-30s rel L2 %.2e from the defaults\n", name, "tuned plan", e);
		CHECK(n2 == n && e <= SAME, "tuned plan differs from the defaults by %.3e", e);
	}
	clunet_model_free(m);
	m = NULL;
	ctx = NULL;
	/* a new context on the same cache folder reads the database */
	b = tune_context(cache);
	if (b) {
		CHECK(clunet_tune_count(b) == rep.shapes, "a new context sees %zu entries, not %zu",
		      clunet_tune_count(b), rep.shapes);
		later = run_in_context(b, dir, name, &n3);
		/* a tuned model starts warm: every program from the cache */
		CHECK(b->cache_misses == 0, "the tuned plan compiled %u programs in a new context",
		      b->cache_misses);
		if (later && plain)
			CHECK(n3 == n && diff(later, plain, n) <= SAME, "later run with the database "
			      "differs from the defaults");
	}
	/* the same file under another driver version: ignored */
	{
		clunet_device_info dev;
		char folder_file[4096];
		size_t size;
		const char *k, *v;
		clunet_context_device(b ? b : a, &dev);
		CHECK(clunet_tune_entry(b ? b : a, 0, &k, &v) == CLUNET_OK, "no first entry");
		(void)folder_file;
		snprintf(path, sizeof(path), "%s", cache);
		if (tu_find_file(cache, "tuning.json", path, sizeof(path)) &&
		    tu_read_text(path, &text, &size)) {
			char *at = strstr(text, dev.driver);
			CHECK(at != NULL, "tuning.json does not name the driver");
			if (at) {
				*at = *at == 'X' ? 'Y' : 'X';
				f = fopen(path, "w");
				if (f) {
					fputs(text, f);
					fclose(f);
				}
				c = tune_context(cache);
				if (c)
					CHECK(clunet_tune_count(c) == 0, "a database for another driver "
					      "was used (%zu entries)", clunet_tune_count(c));
			}
		} else {
			CHECK(0, "no tuning.json under %s", cache);
		}
	}
out:
	free(text);
	free(plain);
	free(tuned);
	free(later);
	clunet_model_free(m);
	clunet_tensors_free(in.t, in.n);
	clunet_context_destroy(c);
	clunet_context_destroy(b);
	clunet_context_destroy(a);
	ctx = main_ctx;
	tu_rmtree(cache);
	free(cache);
}

int main(int argc, char **argv)
{
	clunet_context_options o;
	if (argc < 2) {
		printf("usage: test_methods tests/data\n");
		return 2;
	}
	clunet_context_options_init(&o);
	if (clunet_context_create(&o, &ctx) != CLUNET_OK) {
		printf("cannot create a context: %s\n", clunet_last_error());
		return 1;
	}
	{
		char d[4096];
		snprintf(d, sizeof(d), "%s/unet2dcond", argv[1]);
		attention_choices(d, "sd15_tiny", 1);
		attention_choices(d, "sd21_linear_upcast", 1);
		attention_choices(d, "encoder_attention_mask", 1);
		attention_choices(d, "attention_mask_single_res", 1);
		attention_choices(d, "attn_up_block", 1);
		attention_choices(d, "k_upscaler", 1);
		lora_cycle(d);
		snprintf(d, sizeof(d), "%s/unet2d", argv[1]);
		attention_choices(d, "ddpm_cifar10_small", 0);
		snprintf(d, sizeof(d), "%s/unet1d", argv[1]);
		tuning(d, "hopper_planner_h32");
	}
	clunet_context_destroy(ctx);
	return tu_finish("methods");
}
