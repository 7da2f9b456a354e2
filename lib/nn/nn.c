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
	struct nn_entry *next;
} nn_entry;

struct nn_store {
	rt_ctx *rt;
	nn_fetch_fn fetch;
	void *user;
	nn_entry *buckets[NN_BUCKETS];
	uint64_t bytes;
};

nn_store *nn_store_new(rt_ctx *rt, nn_fetch_fn fetch, void *user)
{
	nn_store *s = cu_calloc(1, sizeof(nn_store));
	if (s) {
		s->rt = rt;
		s->fetch = fetch;
		s->user = user;
	}
	return s;
}

void nn_store_free(nn_store *s)
{
	if (!s)
		return;
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

void nn_ctx_init(nn_ctx *c, cu_graph *g, nn_store *store)
{
	memset(c, 0, sizeof(*c));
	c->g = g;
	c->rt = g->rt;
	c->store = store;
	c->temb = -1;
	for (int i = 0; i < 5; i++)
		c->temb_act[i] = -1;
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
	return cu_graph_weight(c->g, e->mem, 0, CU_F32, ndim, shape);
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
		return entry_tensor(c, e, 5, packed_shape);
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

int nn_conv2d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int bias, conv_args *a)
{
	char name[512];
	snprintf(name, sizeof(name), "%s.weight", prefix);
	a->bias = bias ? nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ oc }, "%s.bias", prefix) : -1;
	return op_conv2d(c->g, x, packed_weight(c, name, 4, oc, ic, k, k), oc, k, k, a);
}

/* Linear weights are [out, in] in the file and run as the [out, in, 1, 1]
 * convolution they are (on [N, in] or on [N, in, H, W]). */
int nn_linear_ex(nn_ctx *c, const char *prefix, int x, int in, int out, int bias, conv_args *a)
{
	char name[512];
	int w;
	snprintf(name, sizeof(name), "%s.weight", prefix);
	w = packed_weight(c, name, 2, out, in, 1, 1);
	a->bias = bias ? nn_weight(c, NN_W_BIAS, 1, (int64_t[]){ out }, "%s.bias", prefix) : -1;
	return op_conv2d(c->g, x, w, out, 1, 1, a);
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
