/* UNet2DModel (diffusers models/unets/unet_2d.py, v0.26.3). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAX_LEVELS 16
#define SQRT2 1.41421356237309515f /* np.sqrt(2.0) */

typedef enum { TE_POSITIONAL, TE_FOURIER, TE_LEARNED } temb_type;
typedef enum { CE_NONE, CE_EMBEDDING, CE_TIMESTEP, CE_IDENTITY } class_type;
typedef enum {
	B_DOWN, B_ATTN_DOWN, B_SKIP_DOWN, B_ATTN_SKIP_DOWN, B_RESNET_DOWN,
	B_UP, B_ATTN_UP, B_SKIP_UP, B_ATTN_SKIP_UP, B_RESNET_UP,
} block_type;

typedef struct unet2d_config {
	int in_ch, out_ch;
	int center;
	temb_type temb;
	float freq_shift;
	int flip;
	int levels;
	block_type down[MAX_LEVELS], up[MAX_LEVELS];
	int boc[MAX_LEVELS];
	int layers;
	float mid_scale;
	int ds_pad;
	int ds_resnet, us_resnet; /* downsample_type / upsample_type "resnet" */
	cu_act act;
	int head_dim;             /* 0: null */
	int groups;               /* 0: null */
	int attn_groups;          /* -1: null */
	float eps;
	int scale_shift;
	int add_attention;
	class_type cls;
	int num_class_embeds;
	int num_train_timesteps;
	int sample_h, sample_w;   /* sample_size, 0 if absent */
} unet2d_config;

/* ------------------------------------------------------------ config */

static const char *const down_names[] = { "DownBlock2D", "AttnDownBlock2D", "SkipDownBlock2D",
					  "AttnSkipDownBlock2D", "ResnetDownsampleBlock2D", NULL };
static const char *const up_names[] = { "UpBlock2D", "AttnUpBlock2D", "SkipUpBlock2D",
					"AttnSkipUpBlock2D", "ResnetUpsampleBlock2D", NULL };

static int is_skip(block_type b)
{
	return b == B_SKIP_DOWN || b == B_ATTN_SKIP_DOWN || b == B_SKIP_UP || b == B_ATTN_SKIP_UP;
}

static clunet_status parse_blocks(const cfg *c, const char *key, const char *const *names,
				  block_type base, block_type *out, int *n)
{
	const char *list[MAX_LEVELS];
	clunet_status st = cfg_str_list(c, key, list, MAX_LEVELS, n);
	if (st)
		return st;
	if (*n == 0)
		return cfg_error(c, key, "needs at least one block");
	for (int i = 0; i < *n; i++) {
		const char *name = list[i];
		int found = -1;
		if (strncmp(name, "UNetRes", 7) == 0) /* legacy prefix, stripped by get_*_block */
			name += 7;
		for (int k = 0; names[k]; k++)
			if (strcmp(name, names[k]) == 0)
				found = k;
		if (found < 0) {
			if (strstr(name, "CrossAttn"))
				return cfg_error(c, key,
						 "entry %d: %s needs cross_attention_dim, which "
						 "UNet2DModel does not have (diffusers raises here)", i,
						 list[i]);
			return cfg_error(c, key, "entry %d: \"%s\" is not a UNet2DModel block (allowed: "
					 "%s, %s, %s, %s, %s)", i, list[i], names[0], names[1],
					 names[2], names[3], names[4]);
		}
		out[i] = (block_type)(base + found);
	}
	return CLUNET_OK;
}

static clunet_status parse_sample_size(const cfg *c, unet2d_config *u)
{
	const cJSON *j = cfg_get(c, "sample_size");
	long v[2];
	int n;
	clunet_status st;
	if (!j || cJSON_IsNull(j))
		return CLUNET_OK;
	st = cfg_int_list(c, "sample_size", v, 2, &n, 2);
	if (st)
		return st;
	if (n != 2 || v[0] <= 0 || v[1] <= 0)
		return cfg_error(c, "sample_size", "expected a positive integer or [height, width]");
	u->sample_h = (int)v[0];
	u->sample_w = (int)v[1];
	return CLUNET_OK;
}

static clunet_status parse_config(model *m, const cfg *c)
{
	static const char *const temb_names[] = { "positional", "fourier", "learned", NULL };
	static const char *const shift_names[] = { "default", "scale_shift", NULL };
	static const char *const resample_names[] = { "conv", "resnet", NULL };
	unet2d_config *u = cu_calloc(1, sizeof(unet2d_config));
	long v, boc[MAX_LEVELS];
	int n, is_null, idx, nup;
	double d;
	const char *s;
	clunet_status st;

	if (!u)
		return CLUNET_ERR_HOST_MEMORY;
	m->config = u;
#define TRY(x) do { if ((st = (x)) != CLUNET_OK) return st; } while (0)
	TRY(cfg_int(c, "in_channels", 3, &v));
	if (v <= 0 || v > 65536)
		return cfg_error(c, "in_channels", "must be a positive channel count");
	u->in_ch = (int)v;
	TRY(cfg_int(c, "out_channels", 3, &v));
	if (v <= 0 || v > 65536)
		return cfg_error(c, "out_channels", "must be a positive channel count");
	u->out_ch = (int)v;
	TRY(cfg_bool(c, "center_input_sample", 0, &u->center));
	TRY(cfg_enum(c, "time_embedding_type", temb_names, 0, &idx));
	u->temb = (temb_type)idx;
	TRY(cfg_num(c, "freq_shift", 0, &d));
	u->freq_shift = (float)d;
	TRY(cfg_bool(c, "flip_sin_to_cos", 1, &u->flip));
	TRY(parse_blocks(c, "down_block_types", down_names, B_DOWN, u->down, &u->levels));
	TRY(parse_blocks(c, "up_block_types", up_names, B_UP, u->up, &nup));
	if (nup != u->levels)
		return cfg_error(c, "up_block_types", "has %d blocks but down_block_types has %d "
				 "(diffusers requires the same number)", nup, u->levels);
	TRY(cfg_int_list(c, "block_out_channels", boc, MAX_LEVELS, &n, 0));
	if (n != u->levels)
		return cfg_error(c, "block_out_channels", "has %d entries but there are %d down blocks",
				 n, u->levels);
	for (int i = 0; i < n; i++) {
		if (boc[i] <= 0 || boc[i] > 65536)
			return cfg_error(c, "block_out_channels", "entry %d must be a positive channel "
					 "count", i);
		u->boc[i] = (int)boc[i];
	}
	TRY(cfg_int(c, "layers_per_block", 2, &v));
	if (v < 1 || v > 64)
		return cfg_error(c, "layers_per_block", "must be an integer of at least 1");
	u->layers = (int)v;
	TRY(cfg_num(c, "mid_block_scale_factor", 1, &d));
	if (d == 0)
		return cfg_error(c, "mid_block_scale_factor", "must not be 0 (outputs are divided by it)");
	u->mid_scale = (float)d;
	TRY(cfg_int(c, "downsample_padding", 1, &v));
	if (v < 0 || v > 64)
		return cfg_error(c, "downsample_padding", "must be a non-negative integer");
	/* other paddings change the down path's sizes: the skip connections no
	 * longer fit and diffusers' forward() fails */
	if (v > 1 && u->levels > 1)
		return cfg_error(c, "downsample_padding", "is %ld; only 0 and 1 keep the sizes of the "
				 "skip connections (diffusers' forward() fails otherwise)", v);
	u->ds_pad = (int)v;
	TRY(cfg_enum(c, "downsample_type", resample_names, 0, &u->ds_resnet));
	TRY(cfg_enum(c, "upsample_type", resample_names, 0, &u->us_resnet));
	TRY(cfg_num(c, "dropout", 0, &d)); /* inference: no effect */
	TRY(cfg_str(c, "act_fn", "silu", &s));
	if (!nn_parse_act(s, &u->act))
		return cfg_error(c, "act_fn", "\"%s\" is not an activation diffusers knows (silu, "
				 "swish, mish, gelu, relu)", s);
	TRY(cfg_int_or_null(c, "attention_head_dim", 8, 0, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "attention_head_dim", "must be a positive integer or null");
	u->head_dim = is_null ? 0 : (int)v;
	TRY(cfg_int_or_null(c, "norm_num_groups", 32, 0, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "norm_num_groups", "must be a positive integer or null");
	u->groups = is_null ? 0 : (int)v;
	TRY(cfg_int_or_null(c, "attn_norm_num_groups", 0, 1, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "attn_norm_num_groups", "must be a positive integer or null");
	u->attn_groups = is_null ? -1 : (int)v;
	TRY(cfg_num(c, "norm_eps", 1e-5, &d));
	if (d < 0)
		return cfg_error(c, "norm_eps", "must not be negative");
	u->eps = (float)d;
	TRY(cfg_enum(c, "resnet_time_scale_shift", shift_names, 0, &u->scale_shift));
	TRY(cfg_bool(c, "add_attention", 1, &u->add_attention));
	TRY(cfg_int_or_null(c, "num_class_embeds", 0, 1, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "num_class_embeds", "must be a positive integer or null");
	u->num_class_embeds = is_null ? 0 : (int)v;
	TRY(cfg_str(c, "class_embed_type", NULL, &s));
	if (!s)
		u->cls = u->num_class_embeds ? CE_EMBEDDING : CE_NONE;
	else if (strcmp(s, "timestep") == 0)
		u->cls = CE_TIMESTEP;
	else if (strcmp(s, "identity") == 0)
		u->cls = CE_IDENTITY;
	else /* diffusers' UNet2DModel leaves any other value without a class embedding */
		u->cls = CE_NONE;
	TRY(cfg_int_or_null(c, "num_train_timesteps", 0, 1, &v, &is_null));
	if (u->temb == TE_LEARNED && (is_null || v <= 0))
		return cfg_error(c, "num_train_timesteps", "must be a positive integer when "
				 "time_embedding_type is \"learned\"");
	u->num_train_timesteps = is_null ? 0 : (int)v;
	TRY(parse_sample_size(c, u));

	/* combinations diffusers would reject at construction or in forward() */
	for (int i = 0; i < u->levels; i++) {
		int final = i == u->levels - 1;
		if (!u->groups && !is_skip(u->down[i]))
			return cfg_error(c, "norm_num_groups", "null is only possible when every block "
					 "is a Skip block (down block %d is not)", i);
		if (!u->groups && !is_skip(u->up[i]))
			return cfg_error(c, "norm_num_groups", "null is only possible when every block "
					 "is a Skip block (up block %d is not)", i);
		if (is_skip(u->down[i]) && !final && u->in_ch != 3)
			return cfg_error(c, "in_channels", "is %d, but %s's skip_conv takes the 3 "
					 "channels of the input image", u->in_ch, down_names[u->down[i] - B_DOWN]);
		if (is_skip(u->up[i]) && !final && u->out_ch != 3)
			return cfg_error(c, "out_channels", "is %d, but %s adds a 3-channel skip image "
					 "to the output", u->out_ch, up_names[u->up[i] - B_UP]);
	}
	if (u->cls == CE_EMBEDDING && u->num_class_embeds <= 0)
		return cfg_error(c, "num_class_embeds", "must be positive");
#undef TRY
	return CLUNET_OK;
}

/* ------------------------------------------------------------ inputs */

static int expect(const clunet_tensor *t, int cond, const char *what)
{
	char s[96];
	if (!cond)
		cu_fail(CLUNET_ERR_INPUT, "input '%s': expected %s, got %s %s", t->name, what,
			cu_dtype_name(t->dtype), model_tensor_shape(t, s, sizeof(s)));
	return cond;
}

/* A 0-d, [1] or [n] tensor broadcast to n values. */
static clunet_status per_item(const clunet_tensor *t, int n, int want_int, double *out)
{
	int64_t k = t->ndim == 0 ? 1 : t->shape[0];
	char what[96];
	snprintf(what, sizeof(what), "a scalar or a 1-D tensor of 1 or %d values", n);
	if (!expect(t, t->ndim <= 1 && (k == 1 || k == n), what))
		return CLUNET_ERR_INPUT;
	/* a Python number becomes a long tensor in diffusers: integral, truncated */
	if (want_int && !(t->flags & CLUNET_TENSOR_PYTHON_NUMBER) &&
	    !expect(t, !cu_dtype_is_float(t->dtype),
		    "an integer tensor (I64 or I32): it indexes an embedding"))
		return CLUNET_ERR_INPUT;
	cu_convert_to_f64(out, t->data, t->dtype, (size_t)k);
	if (t->flags & CLUNET_TENSOR_PYTHON_NUMBER)
		for (int64_t i = 0; i < k; i++)
			out[i] = trunc(out[i]);
	for (int i = 1; i < n && k == 1; i++)
		out[i] = out[0];
	for (int i = 0; i < n; i++)
		if (!isfinite(out[i]))
			return cu_fail(CLUNET_ERR_INPUT, "input '%s': value %d is not finite", t->name, i);
	return CLUNET_OK;
}

/* Timesteps (or class labels through time_proj) for the graph: float32, or
 * int32 indices for a learned embedding. */
static clunet_status time_slot(const unet2d_config *u, model_inputs *mi, const clunet_tensor *t,
			       int n)
{
	double v[4096];
	int64_t ne = n;
	clunet_status st;
	if (n > 4096)
		return cu_fail(CLUNET_ERR_INPUT, "batch of %d is larger than 4096", n);
	st = per_item(t, n, u->temb == TE_LEARNED, v);
	if (st)
		return st;
	if (u->temb == TE_LEARNED) {
		int32_t idx[4096];
		for (int i = 0; i < n; i++) {
			if (v[i] < 0 || v[i] >= u->num_train_timesteps)
				return cu_fail(CLUNET_ERR_INPUT, "input '%s': value %.0f is outside the "
					       "learned embedding's range [0, %d)", t->name, v[i],
					       u->num_train_timesteps);
			idx[i] = (int32_t)v[i];
		}
		return model_slot_values(mi, CU_I32, 1, &ne, idx);
	} else {
		float f[4096];
		for (int i = 0; i < n; i++) {
			f[i] = (float)v[i];
			if (u->temb == TE_FOURIER && !(f[i] > 0))
				return cu_fail(CLUNET_ERR_INPUT, "input '%s': value %g must be positive: "
					       "the Fourier embedding takes its logarithm", t->name, v[i]);
		}
		return model_slot_values(mi, CU_F32, 1, &ne, f);
	}
}

static clunet_status prepare_inputs(model *m, const clunet_tensor *in, size_t n, model_inputs *mi)
{
	const unet2d_config *u = m->config;
	const clunet_tensor *sample = model_find_input(in, n, "sample");
	const clunet_tensor *ts = model_find_input(in, n, "timestep");
	const clunet_tensor *cls = model_find_input(in, n, "class_labels");
	int batch, mult = 1 << (u->levels - 1);
	char what[128];
	clunet_status st;

	for (size_t i = 0; i < n; i++)
		if (strcmp(in[i].name, "sample") && strcmp(in[i].name, "timestep") &&
		    strcmp(in[i].name, "class_labels"))
			return cu_fail(CLUNET_ERR_INPUT, "unexpected input '%s' (UNet2DModel takes "
				       "sample, timestep and class_labels)", in[i].name);
	if (!sample)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'sample' [N, %d, H, W]", u->in_ch);
	if (!ts)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'timestep'");
	snprintf(what, sizeof(what), "a float tensor [N, %d, H, W]", u->in_ch);
	if (!expect(sample, cu_dtype_is_float(sample->dtype) && sample->ndim == 4 &&
				    sample->shape[1] == u->in_ch && sample->shape[0] > 0 &&
				    sample->shape[2] > 0 && sample->shape[3] > 0, what))
		return CLUNET_ERR_INPUT;
	if (sample->shape[2] % mult || sample->shape[3] % mult)
		return cu_fail(CLUNET_ERR_INPUT, "input 'sample': height %lld and width %lld must be "
			       "multiples of %d (2^(levels-1) for %d levels)",
			       (long long)sample->shape[2], (long long)sample->shape[3], mult, u->levels);
	if (sample->shape[0] > 4096)
		return cu_fail(CLUNET_ERR_INPUT, "input 'sample': batch larger than 4096");
	batch = (int)sample->shape[0];
	if (u->cls == CE_NONE && cls)
		return cu_fail(CLUNET_ERR_INPUT, "input 'class_labels': this model has no class "
			       "embedding (class_embed_type and num_class_embeds are null)");
	if (u->cls != CE_NONE && !cls)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'class_labels': the model is class "
			       "conditioned");
	st = model_slot_f32(mi, sample);
	if (!st)
		st = time_slot(u, mi, ts, batch);
	if (st || !cls)
		return st;
	if (u->cls == CE_TIMESTEP)
		return time_slot(u, mi, cls, batch);
	if (u->cls == CE_EMBEDDING) {
		double v[4096];
		int32_t idx[4096];
		int64_t ne = batch;
		st = per_item(cls, batch, 1, v);
		if (st)
			return st;
		for (int i = 0; i < batch; i++) {
			if (v[i] < 0 || v[i] >= u->num_class_embeds)
				return cu_fail(CLUNET_ERR_INPUT, "input 'class_labels': label %.0f is "
					       "outside [0, %d) (num_class_embeds)", v[i],
					       u->num_class_embeds);
			idx[i] = (int32_t)v[i];
		}
		return model_slot_values(mi, CU_I32, 1, &ne, idx);
	}
	/* identity: [N, 4C] (or one row for all) used as is */
	{
		int64_t dim = 4LL * u->boc[0], ne[2] = { batch, dim };
		int rows = cls->ndim == 2 ? (int)cls->shape[0] : 1;
		float *buf;
		snprintf(what, sizeof(what), "a float tensor [N, %lld] (time embedding width)",
			 (long long)dim);
		if (!expect(cls, cu_dtype_is_float(cls->dtype) &&
					 ((cls->ndim == 2 && (rows == 1 || rows == batch) &&
					   cls->shape[1] == dim) ||
					  (cls->ndim == 1 && cls->shape[0] == dim)), what))
			return CLUNET_ERR_INPUT;
		buf = cu_malloc((size_t)(batch * dim) * 4);
		if (!buf)
			return CLUNET_ERR_HOST_MEMORY;
		cu_convert_to_f32(buf, cls->data, cls->dtype, (size_t)(rows * dim));
		for (int64_t i = 0; i < rows * dim; i++) {
			if (!isfinite(buf[i])) {
				free(buf);
				return cu_fail(CLUNET_ERR_INPUT, "input 'class_labels': element %lld is "
					       "not finite", (long long)i);
			}
		}
		for (int i = rows; i < batch; i++)
			memcpy(buf + i * dim, buf, (size_t)dim * 4);
		st = model_slot_values(mi, CU_F32, 2, ne, buf);
		free(buf);
		return st;
	}
}

/* ------------------------------------------------------------ graph */

typedef enum { SKIP_NONE, SKIP_ZERO, SKIP_TENSOR } skip_state;

typedef struct builder {
	nn_ctx *c;
	const unet2d_config *u;
	int stack[4 * MAX_LEVELS * 66];
	int depth;
	int skip;            /* the image-resolution skip path of the Skip blocks */
	skip_state skip_st;
} builder;

#define P(buf, ...) snprintf(buf, sizeof(buf), __VA_ARGS__)

static void push(builder *b, int t)
{
	if (b->c->g->status)
		return;
	if (b->depth < (int)CU_ARRAY_LEN(b->stack))
		b->stack[b->depth++] = t;
	else
		cu_graph_fail(b->c->g, cu_fail(CLUNET_ERR_CONFIG, "too many skip connections"));
}

static int pop(builder *b)
{
	if (b->c->g->status)
		return -1;
	if (b->depth == 0)
		return cu_graph_fail(b->c->g, cu_fail(CLUNET_ERR_CONFIG, "internal: skip stack empty"));
	return b->stack[--b->depth];
}

static int min32(int v)
{
	return v < 32 ? v : 32;
}

static int time_proj(builder *b, int t)
{
	const unet2d_config *u = b->u;
	nn_ctx *c = b->c;
	int64_t d = u->boc[0];
	switch (u->temb) {
	case TE_FOURIER:
		return op_fourier_embed(c->g, t, nn_weight(c, NN_W_FOURIER, 1, &d, "time_proj.weight"),
					1, 0);
	case TE_LEARNED: {
		int64_t shape[2] = { u->num_train_timesteps, d };
		return op_embed(c->g, t, nn_weight(c, NN_W_EMBED, 2, shape, "time_proj.weight"));
	}
	default:
		return op_timestep_embed(c->g, t, (int)d, u->flip, u->freq_shift);
	}
}

static int resnet(builder *b, const char *pre, int x, int in, int out, int groups, int groups_out,
		  float scale, nn_resample rs, int fir, int in_shortcut)
{
	nn_resnet2d_cfg r;
	nn_resnet2d_cfg_init(&r, in, out, groups, b->u->eps, b->u->act, b->u->scale_shift,
			     4 * b->u->boc[0]);
	r.groups_out = groups_out;
	r.output_scale = scale;
	r.resample = rs;
	r.fir = fir;
	r.use_in_shortcut = in_shortcut;
	return nn_resnet2d(b->c, pre, x, &r);
}

static int attention(builder *b, const char *pre, int x, int ch, int head_dim, int groups,
		     float rescale)
{
	nn_attn_cfg a;
	if (b->c->g->status)
		return -1;
	memset(&a, 0, sizeof(a));
	a.channels = ch;
	a.dim_head = head_dim ? head_dim : ch;
	a.heads = ch / a.dim_head;
	if (a.heads < 1) {
		cu_fail(CLUNET_ERR_CONFIG, "%s: attention_head_dim %d is larger than the %d channels",
			pre, a.dim_head, ch);
		return cu_graph_fail(b->c->g, CLUNET_ERR_CONFIG);
	}
	a.groups = groups;
	a.eps = b->u->eps;
	a.rescale = rescale;
	a.residual = 1;
	return nn_spatial_attention(b->c, pre, x, &a);
}

static int down_block(builder *b, int i, int h, int in)
{
	const unet2d_config *u = b->u;
	block_type t = u->down[i];
	int out = u->boc[i], add_down = i != u->levels - 1, skip = is_skip(t);
	int attn = t == B_ATTN_DOWN || t == B_ATTN_SKIP_DOWN;
	float scale = skip ? SQRT2 : 1.0f;
	char pre[256], p[300];

	P(pre, "down_blocks.%d", i);
	for (int j = 0; j < u->layers; j++) {
		int cin = j == 0 ? in : out;
		P(p, "%s.resnets.%d", pre, j);
		if (skip)
			h = resnet(b, p, h, cin, out, min32(cin / 4), min32(out / 4), scale,
				   NN_RESAMPLE_NONE, 0, -1);
		else
			h = resnet(b, p, h, cin, out, u->groups, u->groups, 1.0f, NN_RESAMPLE_NONE, 0, -1);
		if (attn) {
			P(p, "%s.attentions.%d", pre, j);
			h = attention(b, p, h, out, u->head_dim, t == B_ATTN_SKIP_DOWN ? 32 : u->groups,
				      scale);
		}
		push(b, h);
	}
	if (!add_down)
		return h;
	P(p, "%s.downsamplers.0", pre);
	if (skip) {
		conv_args a;
		P(p, "%s.resnet_down", pre);
		h = resnet(b, p, h, out, out, min32(out / 4), min32(out / 4), scale, NN_RESAMPLE_DOWN,
			   1, 1);
		b->skip = nn_fir_down(b->c, b->skip);
		conv_args_init(&a, 0);
		a.res = h; /* skip_conv(skip_sample) + hidden_states */
		P(p, "%s.skip_conv", pre);
		h = nn_conv2d(b->c, p, b->skip, 3, out, 1, 1, &a);
	} else if (t == B_RESNET_DOWN || (t == B_ATTN_DOWN && u->ds_resnet)) {
		h = resnet(b, p, h, out, out, u->groups, u->groups, 1.0f, NN_RESAMPLE_DOWN, 0, -1);
	} else {
		h = nn_downsample2d_conv(b->c, p, h, out, out, u->ds_pad);
	}
	push(b, h);
	return h;
}

static int mid_block(builder *b, int h)
{
	const unet2d_config *u = b->u;
	int ch = u->boc[u->levels - 1];
	int groups = u->groups ? u->groups : min32(ch / 4);
	int attn_groups = u->attn_groups >= 0 ? u->attn_groups : (u->scale_shift ? 0 : groups);
	h = resnet(b, "mid_block.resnets.0", h, ch, ch, groups, groups, u->mid_scale,
		   NN_RESAMPLE_NONE, 0, -1);
	if (u->add_attention)
		h = attention(b, "mid_block.attentions.0", h, ch, u->head_dim, attn_groups,
			      u->mid_scale);
	return resnet(b, "mid_block.resnets.1", h, ch, ch, groups, groups, u->mid_scale,
		      NN_RESAMPLE_NONE, 0, -1);
}

static int up_block(builder *b, int i, int h, int prev_out)
{
	const unet2d_config *u = b->u;
	block_type t = u->up[i];
	int n = u->levels, out = u->boc[n - 1 - i];
	int in = u->boc[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
	int add_up = i != n - 1, skip = is_skip(t), layers = u->layers + 1;
	float scale = skip ? SQRT2 : 1.0f;
	char pre[256], p[300];

	P(pre, "up_blocks.%d", i);
	for (int j = 0; j < layers; j++) {
		int res_skip = j == layers - 1 ? in : out, rin = j == 0 ? prev_out : out;
		int cin = rin + res_skip;
		h = op_concat(b->c->g, h, pop(b));
		P(p, "%s.resnets.%d", pre, j);
		if (t == B_SKIP_UP)
			h = resnet(b, p, h, cin, out, min32(cin / 4), min32(out / 4), scale,
				   NN_RESAMPLE_NONE, 0, -1);
		else if (t == B_ATTN_SKIP_UP) /* min(resnet_in + res_skip // 4, 32): as written */
			h = resnet(b, p, h, cin, out, min32(rin + res_skip / 4), min32(out / 4), scale,
				   NN_RESAMPLE_NONE, 0, -1);
		else
			h = resnet(b, p, h, cin, out, u->groups, u->groups, 1.0f, NN_RESAMPLE_NONE, 0, -1);
		if (t == B_ATTN_UP) {
			P(p, "%s.attentions.%d", pre, j);
			h = attention(b, p, h, out, u->head_dim, u->groups, 1.0f);
		}
	}
	if (t == B_ATTN_SKIP_UP) {
		P(p, "%s.attentions.0", pre);
		h = attention(b, p, h, out, u->head_dim, 32, scale);
	}
	if (skip) {
		if (b->skip_st == SKIP_TENSOR)
			b->skip = nn_fir_up(b->c, b->skip);
		else
			b->skip_st = SKIP_ZERO;
		if (add_up) {
			conv_args a;
			int s;
			P(p, "%s.skip_norm", pre);
			s = nn_group_norm(b->c, p, h, min32(out / 4), u->eps, 1, -1, CU_ACT_SILU);
			conv_args_init(&a, 1);
			a.res = b->skip_st == SKIP_TENSOR ? b->skip : -1;
			P(p, "%s.skip_conv", pre);
			b->skip = nn_conv2d(b->c, p, s, out, 3, 3, 1, &a);
			b->skip_st = SKIP_TENSOR;
			P(p, "%s.resnet_up", pre);
			h = resnet(b, p, h, out, out, min32(out / 4), min32(out / 4), scale, NN_RESAMPLE_UP,
				   1, 1);
		}
		return h;
	}
	if (!add_up)
		return h;
	P(p, "%s.upsamplers.0", pre);
	if (t == B_RESNET_UP || (t == B_ATTN_UP && u->us_resnet))
		return resnet(b, p, h, out, out, u->groups, u->groups, 1.0f, NN_RESAMPLE_UP, 0, -1);
	return nn_upsample2d_conv(b->c, p, h, out, out);
}

static int build(model *m, nn_ctx *c, const model_inputs *mi)
{
	const unet2d_config *u = m->config;
	cu_graph *g = c->g;
	builder *b = cu_calloc(1, sizeof(builder));
	int x, t, emb, h, cls = -1, in, out, tin = u->boc[0] * (u->temb == TE_FOURIER ? 2 : 1);
	int dim = 4 * u->boc[0];
	conv_args a;

	if (!b)
		return cu_graph_fail(g, CLUNET_ERR_HOST_MEMORY);
	b->c = c;
	b->u = u;
	x = cu_graph_input(g, 0, CU_F32, 4, mi->slot[0].ne);
	t = cu_graph_input(g, 1, mi->slot[1].dtype, 1, mi->slot[1].ne);
	if (mi->n > 2)
		cls = cu_graph_input(g, 2, mi->slot[2].dtype, mi->slot[2].ndim, mi->slot[2].ne);
	if (u->center)
		x = op_affine(g, x, 2.0f, -1.0f);

	/* time (and class) embedding */
	emb = nn_timestep_embedding(c, "time_embedding", time_proj(b, t), tin, dim, dim,
				    CU_ACT_SILU);
	if (u->cls == CE_EMBEDDING) {
		int64_t shape[2] = { u->num_class_embeds, dim };
		emb = op_add(g, emb, op_embed(g, cls, nn_weight(c, NN_W_EMBED, 2, shape,
								"class_embedding.weight")));
	} else if (u->cls == CE_TIMESTEP) {
		emb = op_add(g, emb, nn_timestep_embedding(c, "class_embedding",
							   time_proj(b, cls), tin,
							   dim, dim, CU_ACT_SILU));
	} else if (u->cls == CE_IDENTITY) {
		emb = op_add(g, emb, cls);
	}
	c->temb = emb;

	b->skip = x;
	b->skip_st = SKIP_TENSOR;
	conv_args_init(&a, 1);
	h = nn_conv2d(c, "conv_in", x, u->in_ch, u->boc[0], 3, 1, &a);
	push(b, h);
	in = u->boc[0];
	for (int i = 0; i < u->levels; i++) {
		h = down_block(b, i, h, in);
		in = u->boc[i];
	}
	h = mid_block(b, h);
	b->skip_st = SKIP_NONE;
	out = u->boc[u->levels - 1];
	for (int i = 0; i < u->levels; i++) {
		h = up_block(b, i, h, out);
		out = u->boc[u->levels - 1 - i];
	}
	h = nn_group_norm(c, "conv_norm_out", h, u->groups ? u->groups : min32(u->boc[0] / 4), u->eps,
			  1, -1, CU_ACT_SILU);
	conv_args_init(&a, 1);
	if (b->skip_st == SKIP_TENSOR)
		a.res = b->skip; /* sample += skip_sample */
	h = nn_conv2d(c, "conv_out", h, u->boc[0], u->out_ch, 3, 1, &a);
	if (u->temb == TE_FOURIER)
		h = op_div_rows(g, h, t);
	free(b);
	return h;
}

/* ------------------------------------------------------------ examples */

/* The dtype of the timestep slot, and of the class-label slot. */
static cu_dtype time_dtype(const unet2d_config *u)
{
	return u->temb == TE_LEARNED ? CU_I32 : CU_F32;
}

static cu_dtype class_dtype(const unet2d_config *u)
{
	return u->cls == CE_EMBEDDING || (u->cls == CE_TIMESTEP && u->temb == TE_LEARNED) ? CU_I32
											   : CU_F32;
}

static clunet_status load_inputs(model *m, model_inputs *mi)
{
	const unet2d_config *u = m->config;
	int64_t mult = 1LL << (u->levels - 1), one = 1;
	int64_t sample[4] = { 1, u->in_ch, mult, mult }, ident[2] = { 1, 4LL * u->boc[0] };
	clunet_status st = model_slot_shape(mi, CU_F32, 4, sample);
	if (!st)
		st = model_slot_shape(mi, time_dtype(u), 1, &one);
	if (!st && u->cls == CE_IDENTITY)
		st = model_slot_shape(mi, CU_F32, 2, ident);
	else if (!st && u->cls != CE_NONE)
		st = model_slot_shape(mi, class_dtype(u), 1, &one);
	return st;
}

static clunet_status example_inputs(model *m, const clunet_example_shape *s, clunet_tensor *out,
				    size_t *n, void **storage)
{
	const unet2d_config *u = m->config;
	int mult = 1 << (u->levels - 1);
	int batch = s->batch > 0 ? s->batch : 1;
	int h = s->height > 0 ? s->height : (u->sample_h ? u->sample_h : 64);
	int w = s->width > 0 ? s->width : (u->sample_w ? u->sample_w : 64);
	size_t ns, nc, off;
	float *buf;
	cu_rng r;
	if (s->height < 0 || s->width < 0) /* the smallest valid size */
		h = w = mult;
	ns = (size_t)batch * u->in_ch * h * w;
	nc = (size_t)batch * 4 * u->boc[0];
	buf = cu_calloc(ns + batch + nc + 8, sizeof(float));
	if (!buf)
		return CLUNET_ERR_HOST_MEMORY;
	cu_rng_seed(&r, s->seed);
	for (size_t i = 0; i < ns; i++)
		buf[i] = cu_rng_normal(&r);
	memset(out, 0, 3 * sizeof(clunet_tensor));
	out[0] = (clunet_tensor){ "sample", CLUNET_F32, 4, { batch, u->in_ch, h, w }, buf, 0 };
	off = ns;
	for (int i = 0; i < batch; i++) {
		if (u->temb == TE_LEARNED) {
			int32_t v = (int32_t)((i * 37 + 11) % u->num_train_timesteps);
			memcpy(&buf[off + i], &v, 4);
		} else {
			buf[off + i] = u->temb == TE_FOURIER ? 0.5f + (float)i : 10.0f + 97.0f * (float)i;
		}
	}
	out[1] = (clunet_tensor){ "timestep", time_dtype(u) == CU_I32 ? CLUNET_I32 : CLUNET_F32, 1,
				  { batch }, buf + off, 0 };
	off += (size_t)batch;
	*n = 2;
	if (u->cls != CE_NONE) {
		int as_int = class_dtype(u) == CU_I32;
		for (int i = 0; i < batch; i++) {
			if (as_int) {
				int lim = u->cls == CE_EMBEDDING ? u->num_class_embeds : u->num_train_timesteps;
				int32_t v = (int32_t)(i % lim);
				memcpy(&buf[off + i], &v, 4);
			} else {
				buf[off + i] = u->temb == TE_FOURIER ? 1.0f + (float)i : (float)(3 + i);
			}
		}
		if (u->cls == CE_IDENTITY) {
			for (size_t i = 0; i < nc; i++)
				buf[off + i] = cu_rng_normal(&r);
			out[2] = (clunet_tensor){ "class_labels", CLUNET_F32, 2,
						  { batch, 4 * u->boc[0] }, buf + off, 0 };
		} else {
			out[2] = (clunet_tensor){ "class_labels", as_int ? CLUNET_I32 : CLUNET_F32, 1,
						  { batch }, buf + off, 0 };
		}
		*n = 3;
	}
	*storage = buf;
	return CLUNET_OK;
}

const model_vt unet2d_vt = {
	.class_name = "UNet2DModel",
	.parse_config = parse_config,
	.prepare_inputs = prepare_inputs,
	.load_inputs = load_inputs,
	.build = build,
	.example_inputs = example_inputs,
	.deprecated_attention = 1,
};
