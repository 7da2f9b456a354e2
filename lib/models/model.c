/* Loading, the weight source, plans per input shape, and forward. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "model.h"
#include "tune/tune.h"


static const model_vt *const model_classes[] = { &unet2d_vt, &unet1d_vt, &unet2dcond_vt };

/* Known diffusers classes that clunet does not run yet. */
static const char *const planned_classes[] = { "UNet3DConditionModel", "UNetMotionModel" };

void clunet_model_options_init(clunet_model_options *o)
{
	memset(o, 0, sizeof(*o));
}

const char *clunet_model_class(const clunet_model_t *m)
{
	return m ? m->vt->class_name : "";
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t cap)
{
	size_t k = (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < ndim && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < cap)
		snprintf(buf + k, cap - k, "]");
}

const char *model_tensor_shape(const clunet_tensor *t, char *buf, size_t cap)
{
	shape_text(t->ndim, t->shape, buf, cap);
	return buf;
}

/* ------------------------------------------------------------ weights */

static void random_fill(model *m, const char *name, int ndim, const int64_t *shape,
			nn_wrole role, float *data)
{
	cu_rng r;
	size_t n = 1, fan_in = 1;
	float bound;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	for (int i = 1; i < ndim; i++)
		fan_in *= (size_t)shape[i];
	cu_rng_seed(&r, m->seed ^ XXH3_64bits(name, strlen(name)));
	bound = sqrtf(3.0f / (float)(fan_in ? fan_in : 1));
	for (size_t i = 0; i < n; i++) {
		switch (role) {
		case NN_W_MATRIX: data[i] = (2.0f * cu_rng_uniform(&r) - 1.0f) * bound; break;
		case NN_W_BIAS: data[i] = 0.02f * cu_rng_normal(&r); break;
		case NN_W_NORM_SCALE: data[i] = 1.0f + 0.1f * cu_rng_normal(&r); break;
		case NN_W_NORM_SHIFT: data[i] = 0.1f * cu_rng_normal(&r); break;
		case NN_W_EMBED: data[i] = cu_rng_normal(&r); break;
		case NN_W_FOURIER: data[i] = 16.0f * cu_rng_normal(&r); break;
		case NN_W_CUBIC_DOWN: case NN_W_CUBIC_UP: { /* fixed values, not learned */
			static const float cubic[8] = { -0.01171875f, -0.03515625f, 0.11328125f,
							0.43359375f, 0.43359375f, 0.11328125f,
							-0.03515625f, -0.01171875f };
			data[i] = cubic[i % 8] * (role == NN_W_CUBIC_UP ? 2.0f : 1.0f);
			break;
		}
		}
	}
}

/* The names diffusers' _convert_deprecated_attention_blocks renames. */
static int deprecated_name(const char *name, char *out, size_t cap)
{
	static const char *const map[][2] = { { ".to_q.", ".query." },
					      { ".to_k.", ".key." },
					      { ".to_v.", ".value." },
					      { ".to_out.0.", ".proj_attn." } };
	for (size_t i = 0; i < CU_ARRAY_LEN(map); i++) {
		const char *at = strstr(name, map[i][0]);
		if (at) {
			snprintf(out, cap, "%.*s%s%s", (int)(at - name), name, map[i][1],
				 at + strlen(map[i][0]));
			return 1;
		}
	}
	return 0;
}

/* GaussianFourierProjection holds one tensor under two names, `weight` and
 * `W`; checkpoints store either (safetensors keeps one of a shared pair). */
static int is_fourier_weight(const char *name, size_t nlen)
{
	static const char suffix[] = "time_proj.weight";
	size_t sl = sizeof(suffix) - 1;
	return nlen >= sl && strcmp(name + nlen - sl, suffix) == 0 &&
	       (nlen == sl || name[nlen - sl - 1] == '.');
}

static int same_shape(const st_tensor *t, int ndim, const int64_t *shape)
{
	if (t->ndim != ndim)
		return 0;
	for (int i = 0; i < ndim; i++)
		if (t->shape[i] != shape[i])
			return 0;
	return 1;
}

/* The checkpoint's tensor for weight `name` of this shape (diffusers' old
 * attention names and the Fourier twin included), checked; marks it (and a
 * Fourier twin) used. */
static clunet_status find_weight(model *m, const char *name, int ndim, const int64_t *shape,
				 st_tensor **out)
{
	st_tensor *t;
	const st_file *file = NULL;
	char alt[600], want[160], got[160];
	size_t nlen = strlen(name);

	if (!m->weights || m->loaded) /* every weight is fetched while loading */
		return cu_fail(CLUNET_ERR_WEIGHTS, "internal: weight '%s' requested after loading",
			       name);
	t = st_set_find(m->weights, name, &file);
	if (!t && m->vt->deprecated_attention && deprecated_name(name, alt, sizeof(alt)))
		t = st_set_find(m->weights, alt, &file);
	if (!t && is_fourier_weight(name, nlen)) {
		snprintf(alt, sizeof(alt), "%.*sW", (int)(nlen - 6), name);
		t = st_set_find(m->weights, alt, &file);
	}
	shape_text(ndim, shape, want, sizeof(want));
	if (!t)
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: missing tensor '%s' (expected shape %s)",
			       m->weights->label, name, want);
	if (!cu_dtype_is_float(t->dtype))
		return cu_fail(CLUNET_ERR_WEIGHTS,
			       "%s: tensor '%s' has dtype %s, expected F32, F16, BF16 or F64",
			       file->path, t->name, cu_dtype_name(t->dtype));
	if (!same_shape(t, ndim, shape)) {
		shape_text(t->ndim, t->shape, got, sizeof(got));
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor '%s' has shape %s, expected %s",
			       file->path, t->name, got, want);
	}
	t->used = 1;
	/* the twin of a Fourier weight is the same tensor: not an extra */
	if (is_fourier_weight(name, nlen)) {
		st_tensor *twin;
		snprintf(alt, sizeof(alt), "%.*sW", (int)(nlen - 6), name);
		twin = st_set_find(m->weights, alt, NULL);
		if (twin && same_shape(twin, ndim, shape))
			twin->used = 1;
	}
	*out = t;
	return CLUNET_OK;
}

static clunet_status fetch_weight(void *user, const char *name, int ndim, const int64_t *shape,
				  nn_wrole role, float *data)
{
	model *m = user;
	st_tensor *t;
	clunet_status st;
	if (m->random_weights) {
		random_fill(m, name, ndim, shape, role, data);
		return CLUNET_OK;
	}
	st = find_weight(m, name, ndim, shape, &t);
	if (st)
		return st;
	cu_convert_to_f32(data, t->data, t->dtype, t->numel);
	return CLUNET_OK;
}

/* Weights on a CPU-class device that shares host memory, in the file's
 * layout (the kernels read it as it is, so nothing is packed):
 *  - a float32 tensor of the mapped checkpoint becomes a device buffer over
 *    its own pages (CL_MEM_USE_HOST_PTR from the page it starts in; the
 *    tensor at an element offset): loading copies nothing and the page cache
 *    is the only copy;
 *  - any other (fp16, bf16, fp64, an odd alignment, or seeded random weights)
 *    is converted straight into a device buffer the host maps (one pass, no
 *    staging copies).
 * Other devices take the copy path (fetch_weight, then packing).
 * CLUNET_WEIGHTS=copy forces the copy path. */
static clunet_status map_weight(void *user, const char *name, int ndim, const int64_t *shape,
				nn_wrole role, cl_mem *mem, size_t *off)
{
	model *m = user;
	st_tensor *t = NULL;
	uintptr_t at, base;
	long page = sysconf(_SC_PAGESIZE);
	size_t n = 1;
	float *dst;
	cl_int err;
	clunet_status st;
	*mem = NULL;
	*off = 0;
	if (!m->zero_copy || (!m->random_weights && (!m->weights || m->loaded)))
		return CLUNET_OK; /* the copy path reports what is wrong */
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	if (n == 0 || n * 4 > m->rt->info.max_alloc_bytes)
		return CLUNET_OK;
	if (!m->random_weights) {
		st = find_weight(m, name, ndim, shape, &t);
		if (st)
			return st;
		at = (uintptr_t)t->data;
		if (t->dtype == CLUNET_F32 && !(at & 3) && page > 0) {
			base = at & ~(uintptr_t)(page - 1);
			*mem = clCreateBuffer(m->rt->context, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR,
					      at + t->nbytes - base, (void *)base, &err);
			if (err != CL_SUCCESS) {
				*mem = NULL;
				return rt_cl_fail(err, "clCreateBuffer(CL_MEM_USE_HOST_PTR)", name);
			}
			*off = (size_t)(at - base) / 4;
			m->mapped_weights++;
			return CLUNET_OK;
		}
	}
	*mem = clCreateBuffer(m->rt->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, n * 4, NULL,
			      &err);
	if (err != CL_SUCCESS) {
		*mem = NULL;
		return rt_cl_fail(err, "clCreateBuffer", name);
	}
	dst = clEnqueueMapBuffer(m->rt->queue, *mem, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
				 n * 4, 0, NULL, NULL, &err);
	if (err != CL_SUCCESS) {
		clReleaseMemObject(*mem);
		*mem = NULL;
		return rt_cl_fail(err, "clEnqueueMapBuffer", name);
	}
	if (t)
		cu_convert_to_f32(dst, t->data, t->dtype, t->numel);
	else
		random_fill(m, name, ndim, shape, role, dst);
	err = clEnqueueUnmapMemObject(m->rt->queue, *mem, dst, 0, NULL, NULL);
	if (err != CL_SUCCESS) {
		clReleaseMemObject(*mem);
		*mem = NULL;
		return rt_cl_fail(err, "clEnqueueUnmapMemObject", name);
	}
	return CLUNET_OK;
}

static clunet_status check_unused(model *m)
{
	size_t n = 0;
	const st_tensor *first = NULL;
	const st_file *where = NULL;
	char shape[160];
	for (size_t k = 0; k < m->weights->n; k++) {
		const st_file *f = m->weights->files[k];
		for (size_t i = 0; i < f->n; i++) {
			if (f->tensors[i].used)
				continue;
			if (!first) {
				first = &f->tensors[i];
				where = f;
			}
			n++;
		}
	}
	if (!n)
		return CLUNET_OK;
	shape_text(first->ndim, first->shape, shape, sizeof(shape));
	return cu_fail(CLUNET_ERR_WEIGHTS,
		       "%s: unexpected tensor '%s' %s is not part of this %s configuration "
		       "(%zu unexpected tensor%s in all)", where->path, first->name, shape,
		       m->vt->class_name, n, n == 1 ? "" : "s");
}

/* ------------------------------------------------------------ inputs */

const clunet_tensor *model_find_input(const clunet_tensor *in, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (in[i].name && strcmp(in[i].name, name) == 0)
			return &in[i];
	return NULL;
}

static void inputs_clear(model_inputs *mi)
{
	for (int i = 0; i < mi->n; i++)
		free(mi->slot[i].data);
	memset(mi, 0, sizeof(*mi));
}

static void sig_add(model_inputs *mi, const model_slot *s)
{
	size_t k = strlen(mi->sig);
	k += (size_t)snprintf(mi->sig + k, sizeof(mi->sig) - k, "%s%c", mi->n ? "|" : "",
			      s->dtype == CU_F32 ? 'f' : 'i');
	for (int d = 0; d < s->ndim && k < sizeof(mi->sig); d++)
		k += (size_t)snprintf(mi->sig + k, sizeof(mi->sig) - k, "%s%lld", d ? "x" : "",
				      (long long)s->ne[d]);
}

clunet_status model_slot_values(model_inputs *mi, cu_dtype dt, int ndim, const int64_t *ne,
				const void *values)
{
	model_slot *s;
	size_t n = 1;
	if (mi->n >= MODEL_MAX_SLOTS)
		return cu_fail(CLUNET_ERR_ARGUMENT, "internal: too many input slots");
	for (int i = 0; i < ndim; i++)
		n *= (size_t)ne[i];
	s = &mi->slot[mi->n];
	s->data = cu_malloc(n * 4);
	if (!s->data)
		return CLUNET_ERR_HOST_MEMORY;
	memcpy(s->data, values, n * 4);
	s->dtype = dt;
	s->ndim = ndim;
	memcpy(s->ne, ne, (size_t)ndim * sizeof(int64_t));
	sig_add(mi, s);
	mi->n++;
	return CLUNET_OK;
}

void model_slot_name(model_inputs *mi, const char *name)
{
	size_t k = strlen(mi->sig);
	if (!mi->n)
		return;
	snprintf(mi->slot[mi->n - 1].name, sizeof(mi->slot[0].name), "%s", name);
	snprintf(mi->sig + k, sizeof(mi->sig) - k, "=%s", name);
}

int model_slot_find(const model_inputs *mi, const char *name)
{
	for (int i = 0; i < mi->n; i++)
		if (!strcmp(mi->slot[i].name, name))
			return i;
	return -1;
}

clunet_status model_slot_shape(model_inputs *mi, cu_dtype dt, int ndim, const int64_t *ne)
{
	model_slot *s;
	if (mi->n >= MODEL_MAX_SLOTS)
		return cu_fail(CLUNET_ERR_ARGUMENT, "internal: too many input slots");
	s = &mi->slot[mi->n];
	s->data = NULL;
	s->dtype = dt;
	s->ndim = ndim;
	memcpy(s->ne, ne, (size_t)ndim * sizeof(int64_t));
	sig_add(mi, s);
	mi->n++;
	return CLUNET_OK;
}

clunet_status model_slot_f32(model_inputs *mi, const clunet_tensor *t)
{
	model_slot *s;
	size_t n = 1;
	if (mi->n >= MODEL_MAX_SLOTS)
		return cu_fail(CLUNET_ERR_ARGUMENT, "internal: too many input slots");
	for (int i = 0; i < t->ndim; i++)
		n *= (size_t)t->shape[i];
	s = &mi->slot[mi->n];
	s->data = cu_malloc(n * 4);
	if (!s->data)
		return CLUNET_ERR_HOST_MEMORY;
	cu_convert_to_f32(s->data, t->data, t->dtype, n);
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(((float *)s->data)[i])) {
			free(s->data);
			s->data = NULL;
			return cu_fail(CLUNET_ERR_INPUT, "input '%s': element %zu is not finite",
				       t->name, i);
		}
	}
	s->dtype = CU_F32;
	s->ndim = t->ndim;
	memcpy(s->ne, t->shape, (size_t)t->ndim * sizeof(int64_t));
	sig_add(mi, s);
	mi->n++;
	return CLUNET_OK;
}

static clunet_status check_tensors(const clunet_tensor *in, size_t n)
{
	if (n && !in)
		return cu_fail(CLUNET_ERR_ARGUMENT, "forward: inputs is NULL");
	for (size_t i = 0; i < n; i++) {
		const clunet_tensor *t = &in[i];
		if (!t->name)
			return cu_fail(CLUNET_ERR_ARGUMENT, "forward: input %zu has no name", i);
		if (t->ndim < 0 || t->ndim > CLUNET_MAX_DIMS)
			return cu_fail(CLUNET_ERR_INPUT, "input '%s': %d dimensions", t->name, t->ndim);
		if (cu_dtype_size(t->dtype) == 0)
			return cu_fail(CLUNET_ERR_INPUT, "input '%s': unknown dtype %d", t->name,
				       (int)t->dtype);
		int64_t numel = 1;
		for (int d = 0; d < t->ndim; d++) {
			if (t->shape[d] < 0 || t->shape[d] > (1ll << 31))
				return cu_fail(CLUNET_ERR_INPUT, "input '%s': bad dimension %lld",
					       t->name, (long long)t->shape[d]);
			numel *= t->shape[d] ? t->shape[d] : 1;
			/* the kernels count elements in 32 bits */
			if (numel > INT32_MAX)
				return cu_fail(CLUNET_ERR_INPUT, "input '%s': more than 2^31 elements",
					       t->name);
		}
		if (!t->data)
			return cu_fail(CLUNET_ERR_INPUT, "input '%s': no data", t->name);
	}
	return CLUNET_OK;
}

/* ------------------------------------------------------------ plans */

static clunet_status build_plan(model *m, const model_inputs *mi, cu_plan **out)
{
	cu_graph *g = cu_graph_new(m->rt);
	nn_ctx c;
	int y;
	clunet_status st;
	if (!g)
		return CLUNET_ERR_HOST_MEMORY;
	nn_ctx_init(&c, g, m->store);
	c.attn_slice = m->attention.slice_size;
	c.fused_qkv = m->attention.fused_qkv;
	c.attn_kernel = m->attention.kernel;
	y = m->vt->build(m, &c, mi);
	cu_graph_set_output(g, y);
	if (g->status) {
		st = g->status;
		cu_graph_free(g);
		return st;
	}
	st = cu_plan_create(g, out);
	if (st)
		cu_graph_free(g);
	return st;
}

static clunet_status find_plan(model *m, const model_inputs *mi, cu_plan **out)
{
	model_plan *slot = NULL;
	clunet_status st;
	for (int i = 0; i < MODEL_MAX_PLANS; i++) {
		if (m->plans[i].plan && strcmp(m->plans[i].sig, mi->sig) == 0) {
			m->plans[i].last_use = ++m->use_counter;
			*out = m->plans[i].plan;
			return CLUNET_OK;
		}
	}
	for (int i = 0; i < MODEL_MAX_PLANS; i++) {
		if (!m->plans[i].plan) {
			slot = &m->plans[i];
			break;
		}
		if (!slot || m->plans[i].last_use < slot->last_use)
			slot = &m->plans[i];
	}
	if (slot->plan) { /* evict the least recently used plan and its arena */
		cu_plan_free(slot->plan);
		slot->plan = NULL;
	}
	st = build_plan(m, mi, &slot->plan);
	if (st)
		return st;
	snprintf(slot->sig, sizeof(slot->sig), "%s", mi->sig);
	slot->last_use = ++m->use_counter;
	*out = slot->plan;
	return CLUNET_OK;
}

static clunet_status prepare(model *m, const clunet_tensor *in, size_t n, cu_plan **plan)
{
	clunet_status st = check_tensors(in, n);
	if (st)
		return st;
	inputs_clear(&m->cur);
	st = m->vt->prepare_inputs(m, in, n, &m->cur);
	if (st)
		return st;
	return find_plan(m, &m->cur, plan);
}

clunet_status clunet_model_forward(clunet_model_t *m, const clunet_tensor *in, size_t n,
				   clunet_output *out)
{
	cu_plan *plan;
	const void *host[MODEL_MAX_SLOTS];
	const cu_tensor *o;
	clunet_status st;
	if (!m || !out)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_forward: NULL argument");
	st = prepare(m, in, n, &plan);
	if (st)
		return st;
	for (int i = 0; i < m->cur.n; i++)
		host[i] = m->cur.slot[i].data;
	/* the model owns the output, so that evicting a plan cannot free it */
	if (cu_plan_output_bytes(plan) > m->out_cap) {
		float *grown = cu_realloc(m->out, cu_plan_output_bytes(plan));
		if (!grown)
			return CLUNET_ERR_HOST_MEMORY;
		m->out = grown;
		m->out_cap = cu_plan_output_bytes(plan);
	}
	st = cu_plan_run(plan, host, m->out);
	if (st)
		return st;
	o = &plan->g->t[plan->g->output];
	memset(out, 0, sizeof(*out));
	out->ndim = o->ndim;
	memcpy(out->shape, o->ne, (size_t)o->ndim * sizeof(int64_t));
	out->data = m->out;
	if (m->rt->profiling) {
		free(m->profile);
		m->profile = NULL;
		m->n_profile = 0;
	}
	return CLUNET_OK;
}

void clunet_tune_options_init(clunet_tune_options *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->runs = 3;
}

typedef struct tune_cb {
	const clunet_tune_options *o;
} tune_cb;

static void tune_progress(void *user, int op, int n_ops, const char *key, const char *best,
			  double def, double t)
{
	const clunet_tune_options *o = ((tune_cb *)user)->o;
	o->progress(o->user, (size_t)op, (size_t)n_ops, key, best, def, t);
}

clunet_status clunet_model_tune(clunet_model_t *m, const clunet_tensor *in, size_t n,
				const clunet_tune_options *o, clunet_tune_report *report)
{
	cu_plan *plan;
	const void *host[MODEL_MAX_SLOTS];
	clunet_tune_options def;
	cu_tune_stats stats;
	cu_tune_clblast_opts co;
	cu_clblast_stats cstats;
	tune_cb cb;
	clunet_status st;
	if (!m)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_tune: NULL model");
	if (!o) {
		clunet_tune_options_init(&def);
		o = &def;
	}
	if (!m->rt->cache_dir)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_tune: the program cache is off; the "
			       "tuning database lives in its folder");
	if (!m->rt->profiling)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_tune: the context was created "
			       "without profiling (tuning times ops with OpenCL events)");
	st = prepare(m, in, n, &plan);
	if (st)
		return st;
	for (int i = 0; i < m->cur.n; i++)
		host[i] = m->cur.slot[i].data;
	cb.o = o;
	/* CLBlast's own parameters first: the op tuning below then weighs the
	 * tuned CLBlast against our kernels */
	co.worker = o->worker;
	co.candidates = o->clblast_candidates < 0 ? 0 : o->clblast_candidates ? o->clblast_candidates : 12;
	co.runs = o->runs > 0 ? o->runs : 3;
	co.limit_seconds = o->clblast_limit_seconds > 0 ? o->clblast_limit_seconds : 300;
	co.seed = o->clblast_seed;
	co.progress = o->progress ? tune_progress : NULL;
	co.user = &cb;
	st = cu_clblast_tune(plan, &co, &cstats);
	if (st)
		return st;
	st = cu_plan_tune(plan, host, o->runs, o->limit_seconds, o->progress ? tune_progress : NULL,
			  &cb, &stats);
	if (st)
		return st;
	if (report) {
		memset(report, 0, sizeof(*report));
		report->clblast_shapes = (size_t)cstats.shapes;
		report->clblast_candidates = (size_t)cstats.candidates;
		report->clblast_wrong = (size_t)cstats.wrong;
		report->clblast_too_slow = (size_t)cstats.too_slow;
		report->clblast_failed = (size_t)cstats.failed;
		report->clblast_default_seconds = cstats.default_s;
		report->clblast_tuned_seconds = cstats.tuned_s;
		snprintf(report->clblast_choice, sizeof(report->clblast_choice), "%s",
			 cstats.choice[0] ? cstats.choice : "default");
		report->shapes = (size_t)stats.keys;
		report->candidates = (size_t)stats.candidates;
		report->rejected = (size_t)stats.rejected;
		report->too_slow = (size_t)stats.too_slow;
		report->unconfirmed = (size_t)stats.unconfirmed;
		report->default_seconds = stats.default_s;
		report->tuned_seconds = stats.tuned_s;
	}
	return CLUNET_OK;
}

size_t clunet_tune_count(clunet_context_t *ctx)
{
	return ctx ? rt_tune_count(ctx) : 0;
}

clunet_status clunet_tune_entry(clunet_context_t *ctx, size_t i, const char **key,
				const char **choice)
{
	if (!ctx || !key || !choice)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tune_entry: NULL argument");
	if (!rt_tune_entry(ctx, i, key, choice))
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_tune_entry: no entry %zu", i);
	return CLUNET_OK;
}

clunet_status clunet_model_plan(clunet_model_t *m, const clunet_tensor *in, size_t n,
				clunet_plan_info *info)
{
	cu_plan *plan;
	clunet_status st;
	if (!m || !info)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_plan: NULL argument");
	st = prepare(m, in, n, &plan);
	if (st)
		return st;
	info->peak_activation_bytes = plan->arena_bytes;
	info->weight_bytes = nn_store_bytes(m->store);
	info->gflop = plan->flops * 1e-9;
	info->n_ops = (size_t)plan->g->nops;
	return CLUNET_OK;
}

static int cmp_profile(const void *a, const void *b)
{
	const clunet_op_profile *x = a, *y = b;
	return (x->seconds < y->seconds) - (x->seconds > y->seconds);
}

clunet_status clunet_model_profile(clunet_model_t *m, const clunet_op_profile **ops, size_t *n)
{
	cu_plan *plan = NULL;
	if (!m || !ops || !n)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_profile: NULL argument");
	if (!m->rt->profiling)
		return cu_fail(CLUNET_ERR_ARGUMENT,
			       "clunet_model_profile: the context was created without profiling");
	for (int i = 0; i < MODEL_MAX_PLANS; i++)
		if (m->plans[i].plan && strcmp(m->plans[i].sig, m->cur.sig) == 0)
			plan = m->plans[i].plan;
	if (!plan)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_profile: no forward has run");
	if (!m->profile) {
		cu_graph *g = plan->g;
		m->profile = cu_calloc((size_t)g->nops, sizeof(clunet_op_profile));
		if (!m->profile)
			return CLUNET_ERR_HOST_MEMORY;
		for (int i = 0; i < g->nops; i++) {
			cl_ulong t0 = 0, t1 = 0;
			size_t k;
			cl_event ev = plan->events[i];
			if (!ev)
				continue;
			if (clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof(t0), &t0,
						    NULL) != CL_SUCCESS ||
			    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof(t1), &t1,
						    NULL) != CL_SUCCESS)
				continue;
			for (k = 0; k < m->n_profile; k++)
				if (strcmp(m->profile[k].name, g->ops[i].impl->kind) == 0)
					break;
			if (k == m->n_profile) {
				m->profile[k].name = g->ops[i].impl->kind;
				m->n_profile++;
			}
			m->profile[k].count++;
			m->profile[k].seconds += (double)(t1 - t0) * 1e-9;
			m->profile[k].gflop += g->ops[i].flops * 1e-9;
		}
		qsort(m->profile, m->n_profile, sizeof(clunet_op_profile), cmp_profile);
	}
	*ops = m->profile;
	*n = m->n_profile;
	return CLUNET_OK;
}

clunet_status clunet_model_example_inputs(clunet_model_t *m, const clunet_example_shape *shape,
					  const clunet_tensor **inputs, size_t *n)
{
	clunet_example_shape s;
	clunet_status st;
	if (!m || !inputs || !n)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_example_inputs: NULL argument");
	memset(&s, 0, sizeof(s));
	if (shape)
		s = *shape;
	free(m->example_storage);
	m->example_storage = NULL;
	st = m->vt->example_inputs(m, &s, m->example, n, &m->example_storage);
	if (st)
		return st;
	*inputs = m->example;
	return CLUNET_OK;
}

/* ------------------------------------------------------------ load */

static int file_exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static clunet_status open_weights(model *m, const clunet_model_options *opt)
{
	char name[256], *path, *alt;
	const char *variant = opt->variant && *opt->variant ? opt->variant : NULL;
	clunet_status st;
	if (variant && (strchr(variant, '/') || strlen(variant) > 64))
		return cu_fail(CLUNET_ERR_ARGUMENT, "weight variant '%s' is not a plain name", variant);
	/* diffusers' names: diffusion_pytorch_model[.variant].safetensors[.index.json] */
	snprintf(name, sizeof(name), "diffusion_pytorch_model%s%s.safetensors", variant ? "." : "",
		 variant ? variant : "");
	path = cu_path_join(m->dir, name);
	if (!path)
		return CLUNET_ERR_HOST_MEMORY;
	if (file_exists(path)) {
		st = st_set_open_file(path, &m->weights);
		free(path);
		return st;
	}
	alt = cu_asprintf("%s.index.json", path);
	if (alt && file_exists(alt)) { /* sharded (diffusers >= 0.29) */
		free(path);
		st = st_set_open_index(alt, &m->weights);
		free(alt);
		return st;
	}
	free(alt);
	if (opt->allow_random_weights) {
		free(path);
		m->random_weights = 1;
		m->seed = opt->random_seed;
		return CLUNET_OK;
	}
	st = cu_fail(CLUNET_ERR_IO, "%s: missing weight file", path);
	alt = cu_path_join(m->dir, "diffusion_pytorch_model.bin");
	if (alt && file_exists(alt))
		st = cu_fail(CLUNET_ERR_IO,
			     "%s: missing; the folder holds only PyTorch pickle weights (%s), which "
			     "clunet does not read: convert them to safetensors", path, alt);
	free(alt);
	alt = cu_path_join(m->dir, "diffusion_pytorch_model.fp16.safetensors");
	if (!variant && alt && file_exists(alt))
		st = cu_fail(CLUNET_ERR_IO, "%s: missing weight file (the folder has the fp16 variant: "
			     "ask for it with the variant option, `--variant fp16`)", path);
	free(alt);
	free(path);
	return st;
}

/* Builds the graph once at the smallest valid input shapes (shapes only:
 * no input data, no activations): every weight the configuration implies is
 * fetched (checked and uploaded) now, and the file must hold nothing else.
 * Any failure here comes from the configuration, so it is reported as one. */
static clunet_status load_check(model *m)
{
	model_inputs mi;
	cu_graph *g;
	nn_ctx c;
	clunet_status st;

	memset(&mi, 0, sizeof(mi));
	st = m->vt->load_inputs(m, &mi);
	if (st) {
		inputs_clear(&mi);
		return st;
	}
	g = cu_graph_new(m->rt);
	if (!g) {
		inputs_clear(&mi);
		return CLUNET_ERR_HOST_MEMORY;
	}
	nn_ctx_init(&c, g, m->store);
	m->vt->build(m, &c, &mi);
	st = g->status;
	cu_graph_free(g);
	inputs_clear(&mi);
	if (st == CLUNET_ERR_ARGUMENT) /* shapes that do not fit together */
		return cu_fail_prefix(CLUNET_ERR_CONFIG, "%s/config.json: this configuration cannot "
				      "run", m->dir);
	if (st == CLUNET_ERR_CONFIG) /* found while building: name the file */
		return cu_fail_prefix(st, "%s/config.json", m->dir);
	if (st)
		return st;
	return m->weights ? check_unused(m) : CLUNET_OK;
}

clunet_status clunet_model_load(clunet_context_t *ctx, const char *dir,
				const clunet_model_options *options, clunet_model_t **out)
{
	clunet_model_options defaults;
	model *m;
	cfg c = { 0 };
	char *cpath;
	const char *cls = NULL;
	clunet_status st;

	if (!ctx || !dir || !out)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_load: NULL argument");
	*out = NULL;
	if (!options) {
		clunet_model_options_init(&defaults);
		options = &defaults;
	}
	cpath = cu_path_join(dir, "config.json");
	if (!cpath)
		return CLUNET_ERR_HOST_MEMORY;
	st = cfg_load(cpath, &c);
	free(cpath);
	if (st)
		return st;
	m = cu_calloc(1, sizeof(model));
	if (!m) {
		cfg_free(&c);
		return CLUNET_ERR_HOST_MEMORY;
	}
	m->rt = ctx;
	clunet_attention_options_init(&m->attention);
	m->dir = cu_strdup(dir);
	if (!m->dir) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto fail;
	}
	st = cfg_str(&c, "_class_name", NULL, &cls);
	if (st)
		goto fail;
	if (!cls) {
		st = cfg_error(&c, "_class_name", "missing: cannot tell which diffusers model this is");
		goto fail;
	}
	for (size_t i = 0; i < CU_ARRAY_LEN(model_classes); i++)
		if (strcmp(cls, model_classes[i]->class_name) == 0)
			m->vt = model_classes[i];
	if (!m->vt) {
		int planned = 0;
		for (size_t i = 0; i < CU_ARRAY_LEN(planned_classes); i++)
			planned |= strcmp(cls, planned_classes[i]) == 0;
		st = planned ? cu_fail(CLUNET_ERR_UNSUPPORTED, "%s: key '_class_name': %s is not "
						"supported by this version of clunet", c.path, cls)
			     : cfg_error(&c, "_class_name", "\"%s\" is not a diffusers UNet model "
						 "(expected UNet2DModel, UNet1DModel or "
						 "UNet2DConditionModel)", cls);
		goto fail;
	}
	st = m->vt->parse_config(m, &c);
	if (st)
		goto fail;
	cfg_free(&c);
	st = open_weights(m, options);
	if (st)
		goto fail;
	m->zero_copy = ctx->is_cpu && ctx->host_unified &&
		       !(getenv("CLUNET_WEIGHTS") && !strcmp(getenv("CLUNET_WEIGHTS"), "copy"));
	m->store = nn_store_new(ctx, fetch_weight, map_weight, m);
	if (!m->store) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto fail;
	}
	st = load_check(m);
	if (st)
		goto fail;
	/* the weights now live on the device, or in the mapping the device reads
	 * (which then stays for the model's life) */
	if (!m->mapped_weights) {
		st_set_close(m->weights);
		m->weights = NULL;
	}
	m->loaded = 1;
	*out = m;
	return CLUNET_OK;
fail:
	cfg_free(&c);
	clunet_model_free(m);
	return st;
}

void model_drop_plans(model *m)
{
	for (int i = 0; i < MODEL_MAX_PLANS; i++) {
		cu_plan_free(m->plans[i].plan);
		m->plans[i].plan = NULL;
		m->plans[i].sig[0] = 0;
	}
}

void clunet_attention_options_init(clunet_attention_options *o)
{
	memset(o, 0, sizeof(*o));
	o->kernel = -1;
}

clunet_status clunet_model_set_attention(clunet_model_t *m, const clunet_attention_options *o)
{
	clunet_attention_options def;
	if (!m)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_set_attention: model is NULL");
	if (!o) {
		clunet_attention_options_init(&def);
		o = &def;
	}
	if (o->slice_size < 0 || o->kernel < -1 || o->kernel > 1)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_set_attention: slice_size must be >= 0 "
			       "and kernel -1, 0 or 1");
	if (memcmp(o, &m->attention, sizeof(*o))) {
		model_drop_plans(m);
		m->attention = *o;
	}
	return CLUNET_OK;
}

clunet_status clunet_model_set_freeu(clunet_model_t *m, const clunet_freeu *f)
{
	int on;
	if (!m)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_set_freeu: model is NULL");
	if (!m->vt->freeu)
		return cu_fail(CLUNET_ERR_UNSUPPORTED, "FreeU: diffusers' %s has no FreeU (it exists "
			       "for UNet2DConditionModel, UNet3DConditionModel and UNetMotionModel)",
			       m->vt->class_name);
	on = f && f->s1 != 0 && f->s2 != 0 && f->b1 != 0 && f->b2 != 0;
	if (f && (!isfinite(f->s1) || !isfinite(f->s2) || !isfinite(f->b1) || !isfinite(f->b2)))
		return cu_fail(CLUNET_ERR_ARGUMENT, "FreeU: s1, s2, b1 and b2 must be finite");
	if (on && f->threshold < 0)
		return cu_fail(CLUNET_ERR_ARGUMENT, "FreeU: threshold %d must be at least 1",
			       f->threshold);
	if (on && !f->use_fft && f->threshold > 1)
		return cu_fail(CLUNET_ERR_ARGUMENT, "FreeU: threshold %d needs the clFFT filter "
			       "(use_fft = 1); the direct one computes threshold 1", f->threshold);
	if (on == m->freeu_on && (!on || !memcmp(f, &m->freeu, sizeof(*f))))
		return CLUNET_OK;
	model_drop_plans(m);
	m->freeu_on = on;
	if (on) {
		m->freeu = *f;
		if (m->freeu.threshold == 0)
			m->freeu.threshold = 1;
	} else {
		memset(&m->freeu, 0, sizeof(m->freeu));
	}
	return CLUNET_OK;
}

void clunet_model_free(clunet_model_t *m)
{
	if (!m)
		return;
	for (int i = 0; i < MODEL_MAX_PLANS; i++)
		cu_plan_free(m->plans[i].plan);
	nn_store_free(m->store);
	st_set_close(m->weights);
	inputs_clear(&m->cur);
	free(m->profile);
	free(m->example_storage);
	free(m->out);
	free(m->config);
	free(m->dir);
	free(m);
}
