/* The weight store and the plain layers. */
#include "nn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#define NN_BUCKETS 4096

typedef struct nn_entry {
	char *key;
	cl_mem mem;
	int ndim;
	int64_t shape[CU_MAXD];
	size_t off;            /* elements into mem (weights used in place in the file) */
	int packed;            /* a model layer's oc x ic x kh x kw weight: in panels of oct
				  channels, or as the checkpoint has it (oct 0) */
	int oc, ic, kh, kw, oct;
	struct nn_entry *next;
} nn_entry;

struct nn_store {
	rt_ctx *rt;
	nn_fetch_fn fetch;
	nn_map_fn map;
	void *user;
	nn_entry *buckets[NN_BUCKETS];
	uint64_t bytes;
	/* LoRA */
	nn_lora_layer *lora;
	int n_lora;
	nn_lora_mode lora_mode;
	float lora_scale;      /* runtime scale (unfused) or the scale it was fused with */
};

nn_store *nn_store_new(rt_ctx *rt, nn_fetch_fn fetch, nn_map_fn map, void *user)
{
	nn_store *s = cu_calloc(1, sizeof(nn_store));
	if (s) {
		s->rt = rt;
		s->fetch = fetch;
		s->map = map;
		s->user = user;
	}
	return s;
}

static void lora_free_layers(nn_lora_layer *l, int n)
{
	for (int i = 0; i < n; i++) {
		free(l[i].prefix);
		free(l[i].down);
		free(l[i].up);
	}
	free(l);
}

void nn_store_free(nn_store *s)
{
	if (!s)
		return;
	lora_free_layers(s->lora, s->n_lora);
	for (int i = 0; i < NN_BUCKETS; i++) {
		nn_entry *e = s->buckets[i];
		while (e) {
			nn_entry *n = e->next;
			clReleaseMemObject(e->mem);
			free(e->key);
			free(e);
			e = n;
		}
	}
	free(s);
}

uint64_t nn_store_bytes(const nn_store *s)
{
	return s->bytes;
}

static void drop_stacked(nn_store *s);

static size_t numel_of_entry(const nn_entry *e)
{
	size_t n = 1;
	for (int i = 0; i < e->ndim; i++)
		n *= (size_t)e->shape[i];
	return n;
}

static nn_entry *store_find(nn_store *s, const char *key)
{
	unsigned b = (unsigned)(XXH3_64bits(key, strlen(key)) % NN_BUCKETS);
	for (nn_entry *e = s->buckets[b]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static clunet_status store_add(nn_store *s, const char *key, int ndim, const int64_t *shape,
			       const float *data, size_t numel, nn_entry **out)
{
	unsigned b = (unsigned)(XXH3_64bits(key, strlen(key)) % NN_BUCKETS);
	nn_entry *e = cu_calloc(1, sizeof(nn_entry));
	clunet_status st;
	cl_int err;
	if (!e)
		return CLUNET_ERR_HOST_MEMORY;
	e->key = cu_strdup(key);
	if (!e->key) {
		free(e);
		return CLUNET_ERR_HOST_MEMORY;
	}
	st = rt_alloc(s->rt, numel * 4, key, &e->mem);
	if (st) {
		free(e->key);
		free(e);
		return st;
	}
	err = clEnqueueWriteBuffer(s->rt->queue, e->mem, CL_TRUE, 0, numel * 4, data, 0, NULL, NULL);
	if (err != CL_SUCCESS) {
		clReleaseMemObject(e->mem);
		free(e->key);
		free(e);
		return rt_cl_fail(err, "clEnqueueWriteBuffer", key);
	}
	e->ndim = ndim;
	memcpy(e->shape, shape, (size_t)ndim * sizeof(int64_t));
	e->next = s->buckets[b];
	s->buckets[b] = e;
	s->bytes += numel * 4;
	*out = e;
	return CLUNET_OK;
}

/* An entry over memory the device already reads (takes the reference to mem). */
static clunet_status store_add_mapped(nn_store *s, const char *key, int ndim,
				      const int64_t *shape, cl_mem mem, size_t off, nn_entry **out)
{
	unsigned b = (unsigned)(XXH3_64bits(key, strlen(key)) % NN_BUCKETS);
	nn_entry *e = cu_calloc(1, sizeof(nn_entry));
	if (e)
		e->key = cu_strdup(key);
	if (!e || !e->key) {
		free(e);
		clReleaseMemObject(mem);
		return CLUNET_ERR_HOST_MEMORY;
	}
	e->mem = mem;
	e->off = off;
	e->ndim = ndim;
	memcpy(e->shape, shape, (size_t)ndim * sizeof(int64_t));
	e->next = s->buckets[b];
	s->buckets[b] = e;
	s->bytes += numel_of_entry(e) * 4;
	*out = e;
	return CLUNET_OK;
}

static void store_remove(nn_store *s, const char *key)
{
	unsigned b = (unsigned)(XXH3_64bits(key, strlen(key)) % NN_BUCKETS);
	for (nn_entry **pe = &s->buckets[b]; *pe; pe = &(*pe)->next) {
		nn_entry *e = *pe;
		if (strcmp(e->key, key) == 0) {
			*pe = e->next;
			clReleaseMemObject(e->mem);
			s->bytes -= numel_of_entry(e) * 4;
			free(e->key);
			free(e);
			return;
		}
	}
}

void nn_ctx_init(nn_ctx *c, cu_graph *g, nn_store *store)
{
	memset(c, 0, sizeof(*c));
	c->g = g;
	c->rt = g->rt;
	c->store = store;
	c->temb = -1;
	for (int i = 0; i < 5; i++)
		c->temb_act[i] = -1;
	c->attn_kernel = -1;
}

static size_t numel_of(int ndim, const int64_t *shape)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	return n;
}

static int entry_tensor(nn_ctx *c, const nn_entry *e, int ndim, const int64_t *shape)
{
	if (e->ndim != ndim || memcmp(e->shape, shape, (size_t)ndim * sizeof(int64_t)) != 0) {
		cu_fail(CLUNET_ERR_WEIGHTS, "internal: weight '%s' requested with two shapes", e->key);
		return cu_graph_fail(c->g, CLUNET_ERR_WEIGHTS);
	}
	return cu_graph_weight(c->g, e->mem, e->off, CU_F32, ndim, shape);
}

/* Fetches name into a fresh host buffer. */
static float *fetch(nn_ctx *c, const char *name, int ndim, const int64_t *shape, nn_wrole role)
{
	size_t n = numel_of(ndim, shape);
	float *data;
	clunet_status st;
	if (n * 4 > c->rt->info.max_alloc_bytes) { /* say so before reading gigabytes */
		cu_fail(CLUNET_ERR_DEVICE_MEMORY,
			"weight '%s': %zu bytes exceed the device's largest allocation (%llu bytes)",
			name, n * 4, (unsigned long long)c->rt->info.max_alloc_bytes);
		cu_graph_fail(c->g, CLUNET_ERR_DEVICE_MEMORY);
		return NULL;
	}
	data = cu_malloc(n * 4);
	if (!data) {
		cu_graph_fail(c->g, CLUNET_ERR_HOST_MEMORY);
		return NULL;
	}
	st = c->store->fetch(c->store->user, name, ndim, shape, role, data);
	if (st) {
		free(data);
		cu_graph_fail(c->g, st);
		return NULL;
	}
	return data;
}

int nn_weight(nn_ctx *c, nn_wrole role, int ndim, const int64_t *shape, const char *fmt, ...)
{
	char name[512];
	va_list ap;
	nn_entry *e;
	float *data;
	clunet_status st;
	if (c->g->status)
		return -1;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	e = store_find(c->store, name);
	if (e)
		return entry_tensor(c, e, ndim, shape);
	if (c->store->map) {
		cl_mem mem;
		size_t off;
		st = c->store->map(c->store->user, name, ndim, shape, role, &mem, &off);
		if (!st && mem)
			st = store_add_mapped(c->store, name, ndim, shape, mem, off, &e);
		if (st)
			return cu_graph_fail(c->g, st);
		if (mem)
			return entry_tensor(c, e, ndim, shape);
	}
	data = fetch(c, name, ndim, shape, role);
	if (!data)
		return -1;
	st = store_add(c->store, name, ndim, shape, data, numel_of(ndim, shape), &e);
	free(data);
	if (st)
		return cu_graph_fail(c->g, st);
	return entry_tensor(c, e, ndim, shape);
}

int nn_const(nn_ctx *c, const char *key, int ndim, const int64_t *shape, const float *data)
{
	nn_entry *e;
	clunet_status st;
	if (c->g->status)
		return -1;
	e = store_find(c->store, key);
	if (!e) {
		st = store_add(c->store, key, ndim, shape, data, numel_of(ndim, shape), &e);
		if (st)
			return cu_graph_fail(c->g, st);
	}
	return entry_tensor(c, e, ndim, shape);
}

/* The weight `name` packed into panels for the conv kernel and cached under
 * "name#panelN". In the file it is [oc, ic, kh, kw] (file_ndim 4), a 1-D
 * conv's [oc, ic, kw] (3), a linear layer's [oc, ic] (2), or with
 * `transposed` a ConvTranspose1d's [ic, oc, kw], which becomes the
 * equivalent conv over zero-inserted input: w'[oc][ic][t] = w[ic][oc][kw-1-t]. */
static int packed_weight_ex(nn_ctx *c, const char *name, int file_ndim, int transposed, int oc,
			    int ic, int kh, int kw)
{
	char key[560];
	int oct = conv_panel_width(c->rt, oc);
	int64_t file_shape[4];
	int64_t packed_shape[5] = { (oc + oct - 1) / oct, ic, kh, kw, oct };
	size_t n = conv_packed_size(oc, ic, kh, kw, oct);
	nn_entry *e;
	float *data, *packed;
	clunet_status st;
	if (c->g->status)
		return -1;
	if (transposed) {
		file_shape[0] = ic;
		file_shape[1] = oc;
		file_shape[2] = kw;
	} else {
		file_shape[0] = oc;
		file_shape[1] = ic;
		file_shape[2] = file_ndim == 3 ? kw : kh;
		file_shape[3] = kw;
	}
	snprintf(key, sizeof(key), "%s#panel%d", name, oct);
	e = store_find(c->store, key);
	if (e)
		return e->oct ? entry_tensor(c, e, 5, packed_shape)
			      : entry_tensor(c, e, 4, (int64_t[]){ oc, ic, kh, kw });
	if (!transposed && c->store->map) { /* in place, as the checkpoint has it */
		cl_mem mem;
		size_t off;
		st = c->store->map(c->store->user, name, file_ndim, file_shape, NN_W_MATRIX, &mem,
				   &off);
		if (!st && mem)
			st = store_add_mapped(c->store, key, 4, (int64_t[]){ oc, ic, kh, kw }, mem, off,
					      &e);
		if (st)
			return cu_graph_fail(c->g, st);
		if (mem) {
			e->packed = 1;
			e->oc = oc;
			e->ic = ic;
			e->kh = kh;
			e->kw = kw;
			e->oct = 0;
			return entry_tensor(c, e, 4, (int64_t[]){ oc, ic, kh, kw });
		}
	}
	data = fetch(c, name, file_ndim, file_shape, NN_W_MATRIX);
	if (!data)
		return -1;
	packed = cu_malloc(n * 4);
	if (!packed) {
		free(data);
		return cu_graph_fail(c->g, CLUNET_ERR_HOST_MEMORY);
	}
	if (transposed) { /* to [oc][ic][1][kw], flipped */
		float *w = cu_malloc((size_t)oc * ic * kw * 4);
		if (!w) {
			free(data);
			free(packed);
			return cu_graph_fail(c->g, CLUNET_ERR_HOST_MEMORY);
		}
		for (int i = 0; i < ic; i++)
			for (int o = 0; o < oc; o++)
				for (int t = 0; t < kw; t++)
					w[((size_t)o * ic + i) * kw + t] = data[((size_t)i * oc + o) * kw + kw - 1 - t];
		free(data);
		data = w;
	}
	conv_pack(data, oc, ic, kh, kw, oct, packed);
	free(data);
	st = store_add(c->store, key, 5, packed_shape, packed, n, &e);
	free(packed);
	if (st)
		return cu_graph_fail(c->g, st);
	e->packed = !transposed;
	e->oc = oc;
	e->ic = ic;
	e->kh = kh;
	e->kw = kw;
	e->oct = oct;
	return entry_tensor(c, e, 5, packed_shape);
}

static int packed_weight(nn_ctx *c, const char *name, int file_ndim, int oc, int ic, int kh, int kw)
{
	return packed_weight_ex(c, name, file_ndim, 0, oc, ic, kh, kw);
}

int nn_conv1d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int bias, conv_args *a)
{
	char name[512];
	snprintf(name, sizeof(name), "%s.weight", prefix);
	a->pad_t = a->pad_b = 0;
	a->bias = bias ? nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ oc }, "%s.bias", prefix) : -1;
	return op_conv2d(c->g, x, packed_weight(c, name, 3, oc, ic, 1, k), oc, 1, k, a);
}

int nn_conv_transpose1d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int padding)
{
	char name[512];
	conv_args a;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	conv_args_init(&a, 0);
	a.upsample = 2; /* stride 2 */
	a.pad_l = a.pad_r = k - 1 - padding;
	a.bias = nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ oc }, "%s.bias", prefix);
	return op_conv2d(c->g, x, packed_weight_ex(c, name, 3, 1, oc, ic, 1, k), oc, 1, k, &a);
}

int nn_temb_act(nn_ctx *c, cu_act act)
{
	if (c->g->status)
		return -1;
	if (c->temb < 0)
		return cu_graph_fail(c->g, cu_fail(CLUNET_ERR_ARGUMENT, "internal: no time embedding"));
	if (act == CU_ACT_NONE)
		return c->temb;
	if (c->temb_act[act] < 0)
		c->temb_act[act] = op_act(c->g, c->temb, act);
	return c->temb_act[act];
}

/* An unfused LoRA on the layer at prefix: res + up(down(x)), the down conv
 * with the layer's geometry, to join the layer's epilogue as its residual
 * (the epilogue adds res before out_div and act, where W x + b + lora(x)
 * belongs). Without one, a->res. */
static int lora_res(nn_ctx *c, const char *prefix, int x, const conv_args *a)
{
	char key[600];
	nn_entry *d, *u;
	conv_args da, ua;
	int h;
	if (c->store->lora_mode != NN_LORA_UNFUSED || c->g->status)
		return a->res;
	snprintf(key, sizeof(key), "lora:%s.down", prefix);
	d = store_find(c->store, key);
	snprintf(key, sizeof(key), "lora:%s.up", prefix);
	u = store_find(c->store, key);
	if (!d || !u)
		return a->res;
	da = *a;
	da.bias = da.bias2 = da.res = -1;
	da.out_div = 1.0f;
	da.act = CU_ACT_NONE;
	h = op_conv2d(c->g, x, entry_tensor(c, d, d->ndim, d->shape), d->oc, d->kh, d->kw, &da);
	conv_args_init(&ua, 0);
	ua.res = a->res;
	return op_conv2d(c->g, h, entry_tensor(c, u, u->ndim, u->shape), u->oc, 1, 1, &ua);
}

int nn_conv2d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int bias, conv_args *a)
{
	char name[512];
	conv_args la;
	int w;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	a->bias = bias ? nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ oc }, "%s.bias", prefix) : -1;
	w = packed_weight(c, name, 4, oc, ic, k, k);
	la = *a;
	la.res = lora_res(c, prefix, x, a);
	return op_conv2d(c->g, x, w, oc, k, k, &la);
}

/* Linear weights are [out, in] in the file and run as the [out, in, 1, 1]
 * convolution they are (on [N, in] or on [N, in, H, W]). */
int nn_linear_ex(nn_ctx *c, const char *prefix, int x, int in, int out, int bias, conv_args *a)
{
	char name[512];
	int w;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	conv_args la;
	w = packed_weight(c, name, 2, out, in, 1, 1);
	a->bias = bias ? nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ out }, "%s.bias", prefix) : -1;
	la = *a;
	la.res = lora_res(c, prefix, x, a);
	return op_conv2d(c->g, x, w, out, 1, 1, &la);
}

int nn_linear_pitch(nn_ctx *c, const char *prefix, int in, int out, int h, int w)
{
	char name[512];
	if (c->g->status || nn_has_lora(c, prefix)) /* the LoRA's down conv reads the input */
		return 0;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	return op_conv1x1_pv_pitch(c->g, packed_weight(c, name, 2, out, in, 1, 1), in, out, h, w);
}

int nn_linear_padded(nn_ctx *c, const char *prefix, int xp, int h, int w, int in, int out,
		     int bias, conv_args *a)
{
	char name[512];
	int wt;
	if (nn_has_lora(c, prefix)) {
		cu_fail(CLUNET_ERR_ARGUMENT, "internal: %s has an unfused LoRA and cannot read a "
			"padded input", prefix);
		return cu_graph_fail(c->g, CLUNET_ERR_ARGUMENT);
	}
	snprintf(name, sizeof(name), "%s.weight", prefix);
	wt = packed_weight(c, name, 2, out, in, 1, 1);
	a->bias = bias ? nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ out }, "%s.bias", prefix) : -1;
	return op_conv1x1_padded(c->g, xp, h, w, wt, out, a);
}

int nn_linear_geglu(nn_ctx *c, const char *prefix, int x, int in, int out)
{
	char name[512];
	conv_args a;
	int w;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	conv_args_init(&a, 0);
	w = packed_weight(c, name, 2, out, in, 1, 1);
	a.bias = nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ out }, "%s.bias", prefix);
	a.res = lora_res(c, prefix, x, &a); /* a LoRA keeps the GEGLU a separate op */
	return op_conv_geglu(c->g, x, w, out, &a);
}

int nn_linear(nn_ctx *c, const char *prefix, int x, int in, int out, int bias, cu_act act)
{
	conv_args a;
	conv_args_init(&a, 0);
	a.act = act;
	return nn_linear_ex(c, prefix, x, in, out, bias, &a);
}

static int group_norm(nn_ctx *c, const char *prefix, int x, int groups, float eps, int affine,
		      int ss, cu_act act, int post, int res)
{
	int gamma = -1, beta = -1;
	int64_t channels;
	if (c->g->status || x < 0)
		return -1;
	channels = cu_t(c->g, x)->ne[1];
	if (groups <= 0 || channels % groups != 0) {
		cu_fail(CLUNET_ERR_CONFIG, "GroupNorm '%s': %d groups do not divide its %lld channels "
			"(torch.nn.GroupNorm refuses this; check norm_num_groups)", prefix, groups,
			(long long)channels);
		return cu_graph_fail(c->g, CLUNET_ERR_CONFIG);
	}
	if (affine) {
		int64_t ch = cu_t(c->g, x)->ne[1];
		gamma = nn_weight(c, NN_W_NORM_SCALE, 1, &ch, "%s.weight", prefix);
		beta = nn_weight(c, NN_W_NORM_SHIFT, 1, &ch, "%s.bias", prefix);
	}
	return op_group_norm_ex(c->g, x, gamma, beta, groups, eps, ss, act, post, res);
}

int nn_group_norm(nn_ctx *c, const char *prefix, int x, int groups, float eps, int affine, int ss,
		  cu_act act)
{
	return group_norm(c, prefix, x, groups, eps, affine, ss, act, -1, -1);
}

int nn_group_norm_ex(nn_ctx *c, const char *prefix, int x, int groups, float eps, int ss,
		     cu_act act, int post, int res)
{
	return group_norm(c, prefix, x, groups, eps, 1, ss, act, post, res);
}

int nn_timestep_embedding(nn_ctx *c, const char *prefix, int x, int in, int dim, int out_dim,
			  cu_act act)
{
	char p[512];
	int h;
	snprintf(p, sizeof(p), "%s.linear_1", prefix);
	h = nn_linear(c, p, x, in, dim, 1, act);
	snprintf(p, sizeof(p), "%s.linear_2", prefix);
	return nn_linear(c, p, h, dim, out_dim, 1, CU_ACT_NONE);
}

int nn_parse_act(const char *name, cu_act *act)
{
	if (!strcasecmp(name, "silu") || !strcasecmp(name, "swish"))
		*act = CU_ACT_SILU;
	else if (!strcasecmp(name, "mish"))
		*act = CU_ACT_MISH;
	else if (!strcasecmp(name, "gelu"))
		*act = CU_ACT_GELU;
	else if (!strcasecmp(name, "relu"))
		*act = CU_ACT_RELU;
	else
		return 0;
	return 1;
}

/* ---- LoRA ---- */

void nn_store_layers(nn_store *s, nn_layer_fn fn, void *user)
{
	for (int b = 0; b < NN_BUCKETS; b++) {
		for (nn_entry *e = s->buckets[b]; e; e = e->next) {
			char prefix[512];
			const char *end = strstr(e->key, ".weight#panel");
			size_t len;
			if (!e->packed || !end || !strncmp(e->key, "lora:", 5))
				continue;
			len = (size_t)(end - e->key);
			if (len >= sizeof(prefix))
				continue;
			memcpy(prefix, e->key, len);
			prefix[len] = 0;
			fn(user, prefix, e->oc, e->ic, e->kh, e->kw);
		}
	}
}

static nn_entry *layer_entry(nn_store *s, const char *prefix, int out)
{
	char key[600];
	snprintf(key, sizeof(key), "%s.weight#panel%d", prefix, conv_panel_width(s->rt, out));
	return store_find(s, key);
}

/* Packs w [oc][ic][kh][kw] and stores (or overwrites) it under key. */
static clunet_status put_packed(nn_store *s, const char *key, const float *w, int oc, int ic,
				int kh, int kw)
{
	int oct = conv_panel_width(s->rt, oc);
	int64_t shape[5] = { (oc + oct - 1) / oct, ic, kh, kw, oct };
	size_t n = conv_packed_size(oc, ic, kh, kw, oct);
	float *packed = cu_malloc(n * 4);
	nn_entry *e = store_find(s, key);
	clunet_status st = CLUNET_OK;
	if (!packed)
		return CLUNET_ERR_HOST_MEMORY;
	conv_pack(w, oc, ic, kh, kw, oct, packed);
	if (e) {
		cl_int err = clEnqueueWriteBuffer(s->rt->queue, e->mem, CL_TRUE, 0, n * 4, packed, 0,
						  NULL, NULL);
		if (err != CL_SUCCESS)
			st = rt_cl_fail(err, "clEnqueueWriteBuffer", key);
	} else {
		st = store_add(s, key, 5, shape, packed, n, &e);
		if (!st) {
			e->packed = 0; /* not a model layer */
			e->oc = oc;
			e->ic = ic;
			e->kh = kh;
			e->kw = kw;
			e->oct = oct;
		}
	}
	free(packed);
	return st;
}

static float layer_scale(const nn_lora_layer *l, float scale)
{
	return (l->unscaled ? 1.0f : scale) * l->factor;
}

/* Writes every layer's up weights times its effective scale. */
static clunet_status lora_upload_up(nn_store *s)
{
	for (int i = 0; i < s->n_lora; i++) {
		const nn_lora_layer *l = &s->lora[i];
		char key[600];
		float f = layer_scale(l, s->lora_scale);
		size_t n = (size_t)l->out * l->rank;
		float *w = cu_malloc(n * 4);
		clunet_status st;
		if (!w)
			return CLUNET_ERR_HOST_MEMORY;
		for (size_t k = 0; k < n; k++)
			w[k] = l->up[k] * f;
		snprintf(key, sizeof(key), "lora:%s.up", l->prefix);
		st = put_packed(s, key, w, l->out, l->rank, 1, 1);
		free(w);
		if (st)
			return st;
	}
	return CLUNET_OK;
}

static void lora_drop_device(nn_store *s)
{
	for (int i = 0; i < s->n_lora; i++) {
		char key[600];
		snprintf(key, sizeof(key), "lora:%s.down", s->lora[i].prefix);
		store_remove(s, key);
		snprintf(key, sizeof(key), "lora:%s.up", s->lora[i].prefix);
		store_remove(s, key);
	}
}

void nn_store_lora_clear(nn_store *s)
{
	lora_drop_device(s);
	lora_free_layers(s->lora, s->n_lora);
	s->lora = NULL;
	s->n_lora = 0;
	s->lora_mode = NN_LORA_NONE;
}

nn_lora_mode nn_store_lora_mode(const nn_store *s)
{
	return s->lora_mode;
}

float nn_store_lora_current_scale(const nn_store *s)
{
	return s->lora_scale;
}

clunet_status nn_store_lora_set(nn_store *s, nn_lora_layer *layers, int n, float scale)
{
	clunet_status st = CLUNET_OK;
	nn_store_lora_clear(s);
	s->lora = layers;
	s->n_lora = n;
	s->lora_scale = scale;
	for (int i = 0; i < n && !st; i++) {
		const nn_lora_layer *l = &layers[i];
		char key[600];
		if (!layer_entry(s, l->prefix, l->out))
			st = cu_fail(CLUNET_ERR_ARGUMENT, "LoRA: the model has no layer '%s'", l->prefix);
		snprintf(key, sizeof(key), "lora:%s.down", l->prefix);
		if (!st)
			st = put_packed(s, key, l->down, l->rank, l->in, l->kh, l->kw);
	}
	if (!st)
		st = lora_upload_up(s);
	if (st) {
		nn_store_lora_clear(s);
		return st;
	}
	s->lora_mode = NN_LORA_UNFUSED;
	return CLUNET_OK;
}

clunet_status nn_store_lora_scale(nn_store *s, float scale)
{
	s->lora_scale = scale;
	return lora_upload_up(s);
}

/* W += sign * scale * factor * up @ down on every layer, in the packed
 * device copy. */
static clunet_status lora_fold(nn_store *s, float scale, float sign)
{
	for (int i = 0; i < s->n_lora; i++) {
		const nn_lora_layer *l = &s->lora[i];
		nn_entry *e = layer_entry(s, l->prefix, l->out);
		size_t kin = (size_t)l->in * l->kh * l->kw, n;
		float *delta, *packed, *cur, f = sign * scale * l->factor;
		cl_int err;
		if (!e)
			return cu_fail(CLUNET_ERR_ARGUMENT, "LoRA: the model has no layer '%s'", l->prefix);
		n = e->oct ? conv_packed_size(l->out, l->in, l->kh, l->kw, e->oct)
			   : (size_t)l->out * kin;
		delta = cu_calloc((size_t)l->out * kin, sizeof(float));
		packed = e->oct ? cu_malloc(n * 4) : delta;
		cur = cu_malloc(n * 4);
		if (!delta || !packed || !cur) {
			if (packed != delta)
				free(packed);
			free(delta);
			free(cur);
			return CLUNET_ERR_HOST_MEMORY;
		}
		for (int o = 0; o < l->out; o++)
			for (int r = 0; r < l->rank; r++) {
				float a = l->up[(size_t)o * l->rank + r] * f;
				const float *dr = l->down + (size_t)r * kin;
				float *row = delta + (size_t)o * kin;
				for (size_t k = 0; k < kin; k++)
					row[k] += a * dr[k];
			}
		if (e->oct)
			conv_pack(delta, l->out, l->in, l->kh, l->kw, e->oct, packed);
		err = clEnqueueReadBuffer(s->rt->queue, e->mem, CL_TRUE, e->off * 4, n * 4, cur, 0,
					  NULL, NULL);
		if (err == CL_SUCCESS) {
			for (size_t k = 0; k < n; k++)
				cur[k] += packed[k];
			/* in place: the mapping's private copy of these pages, never the file */
			err = clEnqueueWriteBuffer(s->rt->queue, e->mem, CL_TRUE, e->off * 4, n * 4, cur,
						   0, NULL, NULL);
		}
		if (packed != delta)
			free(packed);
		free(delta);
		free(cur);
		if (err != CL_SUCCESS)
			return rt_cl_fail(err, "clEnqueueRead/WriteBuffer", e->key);
	}
	return CLUNET_OK;
}

clunet_status nn_store_lora_fuse(nn_store *s, float scale)
{
	clunet_status st;
	drop_stacked(s);
	st = lora_fold(s, scale, 1.0f);
	if (!st) {
		s->lora_mode = NN_LORA_FUSED;
		s->lora_scale = scale;
	}
	return st;
}

clunet_status nn_store_lora_unfuse(nn_store *s)
{
	clunet_status st;
	drop_stacked(s);
	st = lora_fold(s, s->lora_scale, -1.0f);
	if (!st) {
		s->lora_mode = NN_LORA_UNFUSED;
		st = lora_upload_up(s);
	}
	return st;
}

int nn_has_lora(nn_ctx *c, const char *prefix)
{
	char key[600];
	if (c->store->lora_mode != NN_LORA_UNFUSED)
		return 0;
	snprintf(key, sizeof(key), "lora:%s.down", prefix);
	return store_find(c->store, key) != NULL;
}

/* Reads a stored weight back from the device. */
static clunet_status read_entry(nn_store *s, const nn_entry *e, float *dst)
{
	cl_int err = clEnqueueReadBuffer(s->rt->queue, e->mem, CL_TRUE, e->off * 4,
					 numel_of_entry(e) * 4, dst, 0, NULL, NULL);
	return err == CL_SUCCESS ? CLUNET_OK : rt_cl_fail(err, "clEnqueueReadBuffer", e->key);
}

/* Stacked weights are built from the layers' stored (possibly LoRA-fused)
 * copies, so they must go when those change. */
static void drop_stacked(nn_store *s)
{
	for (int b = 0; b < NN_BUCKETS; b++) {
		nn_entry **pe = &s->buckets[b];
		while (*pe) {
			nn_entry *e = *pe;
			if (!strncmp(e->key, "stack:", 6)) {
				*pe = e->next;
				clReleaseMemObject(e->mem);
				s->bytes -= numel_of_entry(e) * 4;
				free(e->key);
				free(e);
			} else {
				pe = &e->next;
			}
		}
	}
}

int nn_stacked_linear(nn_ctx *c, const char *key, const char *const *prefixes, int n,
		      const int *outs, int in, int has_bias, int *bias)
{
	char k[600], name[600];
	int total = 0, oct, row = 0;
	int64_t packed_shape[5], bshape[1];
	nn_entry *e, *be = NULL;
	float *all = NULL, *packed = NULL, *ball = NULL, *tmp = NULL;
	size_t np;
	clunet_status st = CLUNET_OK;
	if (c->g->status)
		return -1;
	for (int i = 0; i < n; i++)
		total += outs[i];
	oct = conv_panel_width(c->rt, total);
	packed_shape[0] = (total + oct - 1) / oct;
	packed_shape[1] = in;
	packed_shape[2] = packed_shape[3] = 1;
	packed_shape[4] = oct;
	bshape[0] = total;
	snprintf(k, sizeof(k), "stack:%s#panel%d", key, oct);
	e = store_find(c->store, k);
	snprintf(name, sizeof(name), "stack:%s.bias", key);
	if (has_bias)
		be = store_find(c->store, name);
	if (e && (!has_bias || be)) {
		if (has_bias)
			*bias = entry_tensor(c, be, 1, bshape);
		return entry_tensor(c, e, 5, packed_shape);
	}
	all = cu_malloc((size_t)total * in * 4);
	ball = cu_malloc((size_t)total * 4);
	tmp = cu_malloc(conv_packed_size(total, in, 1, 1, 64) * 4 + (size_t)total * in * 4);
	if (!all || !ball || !tmp) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto done;
	}
	for (int i = 0; i < n && !st; i++) {
		int ot = conv_panel_width(c->rt, outs[i]);
		nn_entry *w;
		snprintf(name, sizeof(name), "%s.weight#panel%d", prefixes[i], ot);
		w = store_find(c->store, name);
		if (!w || !w->packed || w->oc != outs[i] || w->ic != in) {
			st = cu_fail(CLUNET_ERR_WEIGHTS, "internal: fused projection: layer '%s' is not "
				     "loaded as [%d, %d]", prefixes[i], outs[i], in);
			break;
		}
		st = read_entry(c->store, w, tmp);
		/* unpack panels [oc / ot][in][ot] into rows (unpacked weights are rows) */
		for (int o = 0; !st && o < outs[i]; o++)
			for (int j = 0; j < in; j++)
				all[(size_t)(row + o) * in + j] =
					w->oct ? tmp[((size_t)(o / ot) * in + j) * ot + o % ot]
					       : tmp[(size_t)o * in + j];
		if (!st && has_bias) {
			nn_entry *b;
			snprintf(name, sizeof(name), "%s.bias", prefixes[i]);
			b = store_find(c->store, name);
			if (!b)
				st = cu_fail(CLUNET_ERR_WEIGHTS, "internal: fused projection: no bias for "
					     "'%s'", prefixes[i]);
			else
				st = read_entry(c->store, b, ball + row);
		}
		row += outs[i];
	}
	if (st)
		goto done;
	np = conv_packed_size(total, in, 1, 1, oct);
	packed = cu_malloc(np * 4);
	if (!packed) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto done;
	}
	conv_pack(all, total, in, 1, 1, oct, packed);
	snprintf(k, sizeof(k), "stack:%s#panel%d", key, oct);
	if (!e)
		st = store_add(c->store, k, 5, packed_shape, packed, np, &e);
	if (!st && has_bias) {
		snprintf(name, sizeof(name), "stack:%s.bias", key);
		st = store_add(c->store, name, 1, bshape, ball, (size_t)total, &be);
	}
done:
	free(all);
	free(ball);
	free(tmp);
	free(packed);
	if (st)
		return cu_graph_fail(c->g, st);
	if (has_bias)
		*bias = entry_tensor(c, be, 1, bshape);
	return entry_tensor(c, e, 5, packed_shape);
}
