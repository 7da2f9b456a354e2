/* Every fixture made by the real diffusers (tools/make_fixtures.py) under
 * the given family folder: load, forward, and compare with diffusers' output
 * (relative L2 error <= 1e-4, printed per case). A second forward at the
 * same shape must reuse the plan and give the same bits. */
#include <dirent.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "common/common.h"
#include "models/model.h"

#define TOLERANCE 1e-4

static int count_plans(const clunet_model_t *m)
{
	int n = 0;
	for (int i = 0; i < MODEL_MAX_PLANS; i++)
		n += m->plans[i].plan != NULL;
	return n;
}

/* meta.json's "apply": what the fixture did to the model after loading it
 * (FreeU, LoRA), as the model's methods. */
typedef struct apply_spec {
	int freeu;
	clunet_freeu fu;
	int lora;
	char lora_file[1024];
	clunet_lora_options lo;
} apply_spec;

static cJSON *read_json(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long len;
	cJSON *j;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)len + 1);
	if (fread(buf, 1, (size_t)len, f) != (size_t)len)
		len = 0;
	fclose(f);
	j = cJSON_Parse(buf);
	free(buf);
	return j;
}

static double num(const cJSON *o, const char *k, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int read_apply(const char *dir, const char *name, apply_spec *a)
{
	char path[4096];
	cJSON *meta, *ap, *f, *l;
	memset(a, 0, sizeof(*a));
	snprintf(path, sizeof(path), "%s/%s/meta.json", dir, name);
	meta = read_json(path);
	if (!meta)
		return 0;
	ap = cJSON_GetObjectItemCaseSensitive(meta, "apply");
	if ((f = cJSON_GetObjectItemCaseSensitive(ap, "freeu")) != NULL) {
		a->freeu = 1;
		a->fu.s1 = (float)num(f, "s1", 0);
		a->fu.s2 = (float)num(f, "s2", 0);
		a->fu.b1 = (float)num(f, "b1", 0);
		a->fu.b2 = (float)num(f, "b2", 0);
	}
	if ((l = cJSON_GetObjectItemCaseSensitive(ap, "lora")) != NULL) {
		const cJSON *file = cJSON_GetObjectItemCaseSensitive(l, "file");
		a->lora = 1;
		clunet_lora_options_init(&a->lo);
		snprintf(a->lora_file, sizeof(a->lora_file), "%s/%s/%s", dir, name,
			 cJSON_IsString(file) ? file->valuestring : "lora.safetensors");
		a->lo.scale = (float)num(l, "scale", 1.0);
		a->lo.fuse = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "fused"));
	}
	cJSON_Delete(meta);
	return a->freeu || a->lora;
}

static void run_case(clunet_context_t *ctx, const char *dir, const char *name)
{
	apply_spec ap;
	char path[4096];
	clunet_model_t *m = NULL;
	clunet_tensor *in = NULL, *exp = NULL;
	size_t n_in = 0, n_exp = 0;
	clunet_output out;
	const clunet_tensor *want = NULL;
	double *ref = NULL, err, t0, t_load, t_first, t_second;
	float *first = NULL;
	size_t n = 1;
	clunet_status st;

	snprintf(path, sizeof(path), "%s/%s/inputs.safetensors", dir, name);
	st = clunet_tensors_read(path, &in, &n_in);
	CHECK(st == CLUNET_OK, "%s: %s", name, clunet_last_error());
	snprintf(path, sizeof(path), "%s/%s/expected.safetensors", dir, name);
	if (!st)
		st = clunet_tensors_read(path, &exp, &n_exp);
	CHECK(st == CLUNET_OK, "%s: %s", name, clunet_last_error());
	if (st)
		goto out;
	for (size_t i = 0; i < n_exp; i++)
		if (!strcmp(exp[i].name, "sample"))
			want = &exp[i];
	CHECK(want != NULL, "%s: expected.safetensors has no 'sample'", name);
	if (!want)
		goto out;
	for (int d = 0; d < want->ndim; d++)
		n *= (size_t)want->shape[d];
	ref = malloc(n * sizeof(double));
	first = malloc(n * sizeof(float));
	cu_convert_to_f64(ref, want->data, want->dtype, n);

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	t0 = cu_now_seconds();
	st = clunet_model_load(ctx, path, NULL, &m);
	t_load = cu_now_seconds() - t0;
	CHECK(st == CLUNET_OK, "%s: load failed: %s", name, clunet_last_error());
	if (st)
		goto out;
	if (read_apply(dir, name, &ap)) {
		if (ap.freeu)
			st = clunet_model_set_freeu(m, &ap.fu);
		if (!st && ap.lora)
			st = clunet_model_load_lora(m, ap.lora_file, &ap.lo);
		CHECK(st == CLUNET_OK, "%s: applying meta.json's \"apply\" failed: %s", name,
		      clunet_last_error());
		if (st)
			goto out;
	}
	t0 = cu_now_seconds();
	st = clunet_model_forward(m, in, n_in, &out);
	t_first = cu_now_seconds() - t0;
	CHECK(st == CLUNET_OK, "%s: forward failed: %s", name, clunet_last_error());
	if (st)
		goto out;
	CHECK(out.ndim == want->ndim && !memcmp(out.shape, want->shape, sizeof(int64_t) * (size_t)out.ndim),
	      "%s: output shape differs from diffusers'", name);
	err = tu_rel_l2(out.data, ref, n);
	memcpy(first, out.data, n * sizeof(float));
	t0 = cu_now_seconds();
	st = clunet_model_forward(m, in, n_in, &out);
	t_second = cu_now_seconds() - t0;
	CHECK(st == CLUNET_OK, "%s: second forward failed: %s", name, clunet_last_error());
	CHECK(count_plans(m) == 1, "%s: the second forward built another plan", name);
	CHECK(st || !memcmp(first, out.data, n * sizeof(float)),
	      "%s: the second forward gave different results", name);
	printf("  %-28s rel L2 %.3e  (tolerance %.0e; load %.2fs, first forward %.2fs, next %.3fs)\n",
	       name, err, TOLERANCE, t_load, t_first, t_second);
	CHECK(err <= TOLERANCE, "%s: relative L2 error %.3e against diffusers exceeds %.0e", name, err,
	      TOLERANCE);
	if (ap.freeu) { /* the clFFT filter: against diffusers and against the direct one */
		double *direct = malloc(n * sizeof(double)), e2, ed;
		for (size_t i = 0; i < n; i++)
			direct[i] = first[i];
		ap.fu.use_fft = 1;
		st = clunet_model_set_freeu(m, &ap.fu);
		if (!st)
			st = clunet_model_forward(m, in, n_in, &out);
		CHECK(st == CLUNET_OK, "%s: FreeU through clFFT failed: %s", name, clunet_last_error());
		if (!st) {
			e2 = tu_rel_l2(out.data, ref, n);
			ed = tu_rel_l2(out.data, direct, n);
			printf("  %-28s rel L2 %.3e  (FreeU via clFFT; %.1e from the direct filter)\n", "",
			       e2, ed);
			CHECK(e2 <= TOLERANCE, "%s: clFFT FreeU: relative L2 error %.3e exceeds %.0e", name,
			      e2, TOLERANCE);
			CHECK(ed <= 1e-5, "%s: clFFT and direct FreeU differ by %.3e", name, ed);
		}
		free(direct);
	}
out:
	clunet_model_free(m);
	clunet_tensors_free(in, n_in);
	clunet_tensors_free(exp, n_exp);
	free(ref);
	free(first);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	clunet_context_t *ctx;
	clunet_context_options o;
	DIR *d;
	struct dirent *e;
	char *names[256];
	int n = 0;
	if (argc < 2) {
		printf("usage: test_models FIXTURE_FAMILY_DIR [CASE...]\n");
		return 2;
	}
	clunet_context_options_init(&o);
	o.log = tu_log;
	if (clunet_context_create(&o, &ctx) != CLUNET_OK) {
		printf("cannot create a context: %s\n", clunet_last_error());
		return 1;
	}
	if (argc > 2) {
		for (int i = 2; i < argc && n < 256; i++)
			names[n++] = strdup(argv[i]);
	} else {
		d = opendir(argv[1]);
		if (!d) {
			printf("cannot open %s\n", argv[1]);
			return 1;
		}
		while ((e = readdir(d)) != NULL && n < 256) {
			char p[4096];
			struct stat sb;
			snprintf(p, sizeof(p), "%s/%s/expected.safetensors", argv[1], e->d_name);
			if (e->d_name[0] != '.' && stat(p, &sb) == 0)
				names[n++] = strdup(e->d_name);
		}
		closedir(d);
	}
	qsort(names, (size_t)n, sizeof(char *), cmp_str);
	CHECK(n > 0, "no fixtures found under %s", argv[1]);
	printf("%d fixtures under %s\n", n, argv[1]);
	for (int i = 0; i < n; i++) {
		run_case(ctx, argv[1], names[i]);
		free(names[i]);
	}
	clunet_context_destroy(ctx);
	return tu_finish("models");
}
