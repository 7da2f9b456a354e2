/* UNet1DModel (diffusers models/unets/unet_1d.py and unet_1d_blocks.py,
 * v0.26.3): the Dance Diffusion audio family (Fourier time features
 * concatenated into the signal, ResConvBlocks, cubic resampling, 1-D
 * self-attention) and the Diffuser RL family (an MLP time embedding fed to
 * ResidualTemporalBlock1Ds, strided and transposed convolutions, planner and
 * value-function heads). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAX_LEVELS 32
#define CUBIC_PAD_DOWN 3 /* reflect padding of Downsample1d("cubic"): 8 // 2 - 1 */
#define CUBIC_PAD_UP 2   /* of Upsample1d("cubic"): (3 + 1) // 2 */

typedef enum { TE_FOURIER, TE_POSITIONAL } temb_type;
typedef enum {
	D_NOSKIP, D_DOWN, D_ATTN, D_RESNET,
} down_type;
typedef enum { U_ATTN, U_UP, U_NOSKIP, U_RESNET } up_type;
typedef enum { M_UNET, M_RESTEMPORAL, M_VALUE } mid_type;
typedef enum { O_NONE, O_CONV, O_VALUE } out_type;

typedef struct unet1d_config {
	int in_ch, out_ch, extra_in;
	temb_type temb;
	int flip;
	float shift;
	int mlp;              /* use_timestep_embedding */
	int n_down, n_up;
	int n_boc;            /* entries of block_out_channels */
	down_type down[MAX_LEVELS];
	up_type up[MAX_LEVELS];
	int boc[MAX_LEVELS];
	mid_type mid;
	out_type out;
	int has_act;
	cu_act act;
	int groups;           /* norm_num_groups (or its null default) */
	int layers;
	int down_each;
	int time_embedding_dim; /* newer diffusers' key; 0 when absent */
	int fourier_width;    /* frequencies of the Fourier projection (8 in v0.26.3) */
	long sample_size;
} unet1d_config;

/* ------------------------------------------------------------ config */

static const char *const down_names[] = { "DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D",
					  "DownResnetBlock1D", NULL };
static const char *const up_names[] = { "AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip",
					"UpResnetBlock1D", NULL };
static const char *const mid_names[] = { "UNetMidBlock1D", "MidResTemporalBlock1D",
					 "ValueFunctionMidBlock1D", NULL };
static const char *const out_names[] = { "OutConv1DBlock", "ValueFunction", NULL };

static clunet_status parse_list(const cfg *c, const char *key, const char *const *names, int *out,
				int *n)
{
	const char *list[MAX_LEVELS];
	clunet_status st = cfg_str_list(c, key, list, MAX_LEVELS, n);
	if (st)
		return st;
	for (int i = 0; i < *n; i++) {
		int found = -1;
		for (int k = 0; names[k]; k++)
			if (!strcmp(list[i], names[k]))
				found = k;
		if (found < 0) /* diffusers: ValueError("... does not exist.") */
			return cfg_error(c, key, "entry %d: \"%s\" is not a UNet1DModel block", i, list[i]);
		out[i] = found;
	}
	return CLUNET_OK;
}

static int rl_down(down_type d)
{
	return d == D_RESNET;
}

static clunet_status parse_config(model *m, const cfg *c)
{
	static const char *const temb_names[] = { "fourier", "positional", NULL };
	unet1d_config *u = cu_calloc(1, sizeof(unet1d_config));
	long v, boc[MAX_LEVELS];
	int n, is_null, idx;
	double d;
	const char *s;
	clunet_status st;

	if (!u)
		return CLUNET_ERR_HOST_MEMORY;
	m->config = u;
#define TRY(x) do { if ((st = (x)) != CLUNET_OK) return st; } while (0)
	TRY(cfg_int(c, "in_channels", 2, &v));
	if (v <= 0 || v > 65536)
		return cfg_error(c, "in_channels", "must be a positive channel count");
	u->in_ch = (int)v;
	TRY(cfg_int(c, "out_channels", 2, &v));
	if (v <= 0 || v > 65536)
		return cfg_error(c, "out_channels", "must be a positive channel count");
	u->out_ch = (int)v;
	TRY(cfg_int(c, "extra_in_channels", 0, &v));
	if (v < 0 || v > 65536)
		return cfg_error(c, "extra_in_channels", "must be a non-negative channel count");
	u->extra_in = (int)v;
	TRY(cfg_enum(c, "time_embedding_type", temb_names, 0, &idx));
	u->temb = (temb_type)idx;
	TRY(cfg_bool(c, "flip_sin_to_cos", 1, &u->flip));
	TRY(cfg_bool(c, "use_timestep_embedding", 0, &u->mlp));
	TRY(cfg_num(c, "freq_shift", 0, &d));
	u->shift = (float)d;
	if (!cfg_get(c, "down_block_types")) {
		static const down_type def_down[] = { D_NOSKIP, D_DOWN, D_ATTN };
		static const up_type def_up[] = { U_ATTN, U_UP, U_NOSKIP };
		u->n_down = u->n_up = 3;
		memcpy(u->down, def_down, sizeof(def_down));
		memcpy(u->up, def_up, sizeof(def_up));
	} else {
		TRY(parse_list(c, "down_block_types", down_names, (int *)u->down, &u->n_down));
	}
	if (cfg_get(c, "up_block_types"))
		TRY(parse_list(c, "up_block_types", up_names, (int *)u->up, &u->n_up));
	else if (cfg_get(c, "down_block_types")) { /* the default up blocks */
		static const up_type def_up[] = { U_ATTN, U_UP, U_NOSKIP };
		u->n_up = 3;
		memcpy(u->up, def_up, sizeof(def_up));
	}
	if (u->n_down == 0)
		return cfg_error(c, "down_block_types", "needs at least one block");
	TRY(cfg_str(c, "mid_block_type", "UNetMidBlock1D", &s));
	for (idx = 0; mid_names[idx] && strcmp(s, mid_names[idx]); idx++)
		;
	if (!mid_names[idx])
		return cfg_error(c, "mid_block_type", "\"%s\" is not a UNet1DModel mid block", s);
	u->mid = (mid_type)idx;
	TRY(cfg_str(c, "out_block_type", NULL, &s));
	u->out = O_NONE;
	if (s) { /* get_out_block returns None for anything else */
		if (!strcmp(s, out_names[0]))
			u->out = O_CONV;
		else if (!strcmp(s, out_names[1]))
			u->out = O_VALUE;
	}
	if (cfg_get(c, "block_out_channels")) {
		TRY(cfg_int_list(c, "block_out_channels", boc, MAX_LEVELS, &n, 0));
	} else {
		boc[0] = 32, boc[1] = 32, boc[2] = 64;
		n = 3;
	}
	if (n < u->n_down)
		return cfg_error(c, "block_out_channels", "has %d entries for %d down blocks", n,
				 u->n_down);
	for (int i = 0; i < n; i++) {
		if (boc[i] <= 0 || boc[i] > 65536)
			return cfg_error(c, "block_out_channels", "entry %d must be a positive channel "
					 "count", i);
		u->boc[i] = (int)boc[i];
	}
	u->n_boc = n;
	if (u->n_up > n) /* reversed_block_out_channels[i + 1] must exist */
		return cfg_error(c, "up_block_types", "has %d blocks for %d block_out_channels",
				 u->n_up, n);
	TRY(cfg_str(c, "act_fn", NULL, &s));
	u->has_act = s != NULL;
	if (s && !nn_parse_act(s, &u->act))
		return cfg_error(c, "act_fn", "\"%s\" is not an activation diffusers knows (silu, "
				 "swish, mish, gelu, relu)", s);
	TRY(cfg_int_or_null(c, "norm_num_groups", 8, 0, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "norm_num_groups", "must be a positive integer or null");
	u->groups = is_null ? (u->boc[0] / 4 < 32 ? u->boc[0] / 4 : 32) : (int)v;
	TRY(cfg_int(c, "layers_per_block", 1, &v));
	if (v < 0 || v > 64)
		return cfg_error(c, "layers_per_block", "must be a small non-negative integer");
	u->layers = (int)v;
	TRY(cfg_bool(c, "downsample_each_block", 0, &u->down_each));
	TRY(cfg_int_or_null(c, "time_embedding_dim", 0, 1, &v, &is_null));
	if (!is_null && (v <= 0 || v % 2))
		return cfg_error(c, "time_embedding_dim", "must be a positive even integer or null");
	u->time_embedding_dim = is_null ? 0 : (int)v;
	TRY(cfg_int_or_null(c, "sample_size", 65536, 0, &v, &is_null));
	u->sample_size = is_null || v <= 0 ? 0 : v;
	u->fourier_width = 8; /* v0.26.3; load_inputs checks the checkpoint */

	/* what diffusers 0.26.3 cannot run */
	if (u->mid == M_RESTEMPORAL && u->down_each)
		return cfg_error(c, "downsample_each_block", "true with MidResTemporalBlock1D fails in "
				 "diffusers 0.26.3 (its downsample assigns a tensor to a module)");
	if (u->mlp && !u->has_act)
		return cfg_error(c, "act_fn", "is null, but use_timestep_embedding needs an activation");
	if (u->out != O_NONE && !u->has_act)
		return cfg_error(c, "act_fn", "is null, but the out block needs an activation");
	for (int i = 0; i < u->n_down; i++) {
		if (rl_down(u->down[i]) && !u->mlp)
			return cfg_error(c, "use_timestep_embedding", "must be true for %s (its resnets "
					 "take a [batch, channels] time embedding)", down_names[u->down[i]]);
		if (u->down[i] == D_NOSKIP && u->mlp)
			return cfg_error(c, "use_timestep_embedding", "must be false for DownBlock1DNoSkip "
					 "(it concatenates the time features to the signal)");
	}
	for (int i = 0; i < u->n_up; i++)
		if (u->up[i] == U_RESNET && !u->mlp)
			return cfg_error(c, "use_timestep_embedding", "must be true for UpResnetBlock1D");
	if ((u->mid != M_UNET || u->out == O_VALUE) && !u->mlp)
		return cfg_error(c, "use_timestep_embedding", "must be true for %s",
				 u->out == O_VALUE ? "the ValueFunction out block" : mid_names[u->mid]);
#undef TRY
	return CLUNET_OK;
}

/* ------------------------------------------------------------ lengths */

/* Walks the layout at input length len: every resampler's length, the
 * reflect padding's minimum, and that every skip meets its up block. 0 and
 * a reason when it does not fit. */
static int fits(const unet1d_config *u, int64_t len, char *why, size_t cap)
{
	int64_t skips[MAX_LEVELS], l = len;
	int ns = 0;
#define NO(...) do { snprintf(why, cap, __VA_ARGS__); return 0; } while (0)
#define CUBIC_DOWN(at) do { if (l <= CUBIC_PAD_DOWN) NO("%s gets length %lld; its reflect padding needs more than %d", at, (long long)l, CUBIC_PAD_DOWN); l = (l + 2 * CUBIC_PAD_DOWN - 8) / 2 + 1; } while (0)
#define CUBIC_UP(at) do { if (l <= CUBIC_PAD_UP) NO("%s gets length %lld; its reflect padding needs more than %d", at, (long long)l, CUBIC_PAD_UP); l *= 2; } while (0)
	for (int i = 0; i < u->n_down; i++) {
		int final = i == u->n_boc - 1;
		switch (u->down[i]) {
		case D_NOSKIP:
			break;
		case D_DOWN:
		case D_ATTN:
			CUBIC_DOWN("a down block's cubic downsampling");
			break;
		case D_RESNET:
			break;
		}
		skips[ns++] = l;
		if (u->down[i] == D_RESNET && (!final || u->down_each))
			l = (l - 1) / 2 + 1; /* Conv1d(k3, s2, p1) */
	}
	switch (u->mid) {
	case M_UNET:
		CUBIC_DOWN("the mid block's cubic downsampling");
		CUBIC_UP("the mid block's cubic upsampling");
		break;
	case M_RESTEMPORAL:
		break;
	case M_VALUE:
		l = (l - 1) / 2 + 1;
		l = (l - 1) / 2 + 1;
		break;
	}
	for (int i = 0; i < u->n_up; i++) {
		int64_t skip = ns ? skips[--ns] : -1;
		if (skip != l)
			NO("up block %d joins length %lld with a skip of length %lld", i, (long long)l,
			   (long long)skip);
		if (u->up[i] == U_ATTN || u->up[i] == U_UP)
			CUBIC_UP("an up block's cubic upsampling");
		else if (u->up[i] == U_RESNET && i != u->n_boc - 1) /* add_upsample */
			l *= 2;
	}
	if (u->out == O_VALUE && l != 1)
		NO("the value function's head needs the length to shrink to 1, not %lld",
		   (long long)l);
	return 1;
#undef NO
#undef CUBIC_DOWN
#undef CUBIC_UP
}

static clunet_status check_length(const unet1d_config *u, int64_t len)
{
	char why[256], dummy[256];
	int64_t halvings = 0, mult, min = -1;
	if (fits(u, len, why, sizeof(why)))
		return CLUNET_OK;
	for (int i = 0; i < u->n_down; i++)
		halvings += u->down[i] == D_DOWN || u->down[i] == D_ATTN ||
			    (u->down[i] == D_RESNET && (i < u->n_boc - 1 || u->down_each));
	halvings += u->mid == M_UNET;
	mult = (int64_t)1 << (halvings < 40 ? halvings : 40);
	for (int64_t k = 1; k <= 4096 && min < 0; k++)
		if (fits(u, k * mult, dummy, sizeof(dummy)))
			min = k * mult;
	if (u->out == O_VALUE)
		return cu_fail(CLUNET_ERR_INPUT, "input 'sample': length %lld does not fit this value "
			       "function: %s", (long long)len, why);
	if (min > 0)
		return cu_fail(CLUNET_ERR_INPUT, "input 'sample': length %lld does not fit this block "
			       "layout: it must be a multiple of %lld and at least %lld (%s)",
			       (long long)len, (long long)mult, (long long)min, why);
	return cu_fail(CLUNET_ERR_INPUT, "input 'sample': length %lld does not fit this block layout "
		       "(%s)", (long long)len, why);
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

static clunet_status prepare_inputs(model *m, const clunet_tensor *in, size_t n, model_inputs *mi)
{
	const unet1d_config *u = m->config;
	const clunet_tensor *sample = model_find_input(in, n, "sample");
	const clunet_tensor *ts = model_find_input(in, n, "timestep");
	char what[128];
	double v[4096];
	float f[4096];
	int64_t k, batch;
	clunet_status st;

	for (size_t i = 0; i < n; i++)
		if (strcmp(in[i].name, "sample") && strcmp(in[i].name, "timestep"))
			return cu_fail(CLUNET_ERR_INPUT, "unexpected input '%s' (UNet1DModel takes sample "
				       "and timestep)", in[i].name);
	if (!sample)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'sample' [N, %d, L]", u->in_ch);
	if (!ts)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'timestep'");
	snprintf(what, sizeof(what), "a float tensor [N, %d, L]", u->in_ch);
	if (!expect(sample, cu_dtype_is_float(sample->dtype) && sample->ndim == 3 &&
				    sample->shape[1] == u->in_ch && sample->shape[0] > 0 &&
				    sample->shape[2] > 0, what))
		return CLUNET_ERR_INPUT;
	batch = sample->shape[0];
	if (batch > 4096)
		return cu_fail(CLUNET_ERR_INPUT, "input 'sample': batch larger than 4096");
	st = check_length(u, sample->shape[2]);
	if (st)
		return st;
	/* diffusers: a Python number becomes a one-element long tensor (a float is
	 * truncated); a 0-d tensor gets one dimension; T timesteps must broadcast
	 * to the batch (1 or N) */
	k = ts->ndim == 0 ? 1 : ts->shape[0];
	snprintf(what, sizeof(what), "a scalar or a 1-D tensor of 1 or %lld values", (long long)batch);
	if (!expect(ts, ts->ndim <= 1 && (k == 1 || k == batch), what))
		return CLUNET_ERR_INPUT;
	cu_convert_to_f64(v, ts->data, ts->dtype, (size_t)k);
	for (int64_t i = 0; i < batch; i++) {
		double t = v[k == 1 ? 0 : i];
		if (!isfinite(t))
			return cu_fail(CLUNET_ERR_INPUT, "input 'timestep': value %lld is not finite",
				       (long long)i);
		if (ts->flags & CLUNET_TENSOR_PYTHON_NUMBER)
			t = trunc(t);
		f[i] = (float)t;
	}
	st = model_slot_f32(mi, sample);
	if (!st)
		st = model_slot_values(mi, CU_F32, 1, &batch, f);
	return st;
}

static clunet_status load_inputs(model *m, model_inputs *mi)
{
	unet1d_config *u = m->config;
	char why[256];
	int64_t one = 1, len = -1;
	clunet_status st;
	/* the Fourier projection's width tells which diffusers rule the
	 * checkpoint follows: 8 frequencies (v0.26.3) or (time_embedding_dim or
	 * 2 * block_out_channels[0]) // 2 (>= 0.36) */
	if (u->temb == TE_FOURIER) {
		const st_tensor *w = m->weights ? st_set_find(m->weights, "time_proj.weight", NULL) : NULL;
		int newer = (u->time_embedding_dim ? u->time_embedding_dim : 2 * u->boc[0]) / 2;
		if (w && w->ndim == 1 && w->shape[0] != 8) {
			if (w->shape[0] != newer)
				return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor 'time_proj.weight' has %lld "
					       "frequencies: neither 8 (diffusers 0.26.3) nor %d (the newer "
					       "rule, (time_embedding_dim or 2 * block_out_channels[0]) // 2)",
					       m->weights->label, (long long)w->shape[0], newer);
			u->fourier_width = newer;
		} else if (!w && m->random_weights && u->time_embedding_dim) {
			u->fourier_width = newer; /* a config written by the newer diffusers */
		}
	}
	for (int64_t k = 1; k <= (1 << 20) && len < 0; k *= 2)
		if (fits(u, k, why, sizeof(why)))
			len = k;
	if (len < 0)
		return cu_fail(CLUNET_ERR_CONFIG, "%s/config.json: no input length fits this block "
			       "layout (%s)", m->dir, why);
	st = model_slot_shape(mi, CU_F32, 3, (int64_t[]){ 1, u->in_ch, len });
	if (!st)
		st = model_slot_shape(mi, CU_F32, 1, &one);
	return st;
}

/* ------------------------------------------------------------ graph */

#define P(buf, ...) snprintf(buf, sizeof(buf), __VA_ARGS__)

typedef struct builder {
	nn_ctx *c;
	const unet1d_config *u;
	int temb;     /* [N, boc0] with the MLP, else the time features [N, F] */
	int skips[MAX_LEVELS];
	int ns;
} builder;

static int attn1d(builder *b, const char *pre, int x, int ch)
{
	nn_attn_cfg a;
	if (b->c->g->status)
		return -1;
	memset(&a, 0, sizeof(a));
	a.channels = ch;
	a.heads = ch / 32;
	if (a.heads < 1 || ch % a.heads) {
		cu_fail(CLUNET_ERR_CONFIG, "%s: SelfAttention1d over %d channels has %d heads (channels "
			"// 32), which diffusers cannot split", pre, ch, a.heads);
		return cu_graph_fail(b->c->g, CLUNET_ERR_CONFIG);
	}
	a.dim_head = ch / a.heads;
	a.groups = 1;
	a.eps = 1e-5f;
	a.rescale = 1.0f;
	a.residual = 1;
	a.names_1d = 1;
	return nn_spatial_attention(b->c, pre, x, &a);
}

/* The three ResConvBlocks of the audio blocks, (in, mid, mid), (mid, mid,
 * mid), (mid, mid, out), each followed by SelfAttention1d when attn. */
static int resconv3(builder *b, const char *pre, int h, int in, int mid, int out, int attn,
		    int last_is_last)
{
	char p[300];
	for (int j = 0; j < 3; j++) {
		int rin = j == 0 ? in : mid, rout = j == 2 ? out : mid;
		P(p, "%s.resnets.%d", pre, j);
		h = nn_resconv1d(b->c, p, h, rin, mid, rout, last_is_last && j == 2);
		if (attn) {
			P(p, "%s.attentions.%d", pre, j);
			h = attn1d(b, p, h, rout);
		}
	}
	return h;
}

static int rtb(builder *b, const char *pre, int h, int in, int out)
{
	return nn_residual_temporal1d(b->c, pre, h, b->temb, in, out, b->u->boc[0]);
}

static int down1d(builder *b, const char *pre, int x, int ch)
{
	conv_args a;
	char p[320];
	conv_args_init(&a, 0);
	a.stride = 2;
	a.pad_l = a.pad_r = 1;
	P(p, "%s.conv", pre);
	return nn_conv1d(b->c, p, x, ch, ch, 3, 1, &a);
}

static int down_block(builder *b, int i, int h, int in)
{
	const unet1d_config *u = b->u;
	int out = u->boc[i], final = i == u->n_boc - 1;
	char pre[64], p[300];
	P(pre, "down_blocks.%d", i);
	switch (u->down[i]) {
	case D_NOSKIP: { /* cat([x, temb]) first: the time features join the signal */
		int len = (int)cu_t(b->c->g, h)->ne[2];
		h = op_concat(b->c->g, h, op_repeat_len(b->c->g, b->temb, len));
		h = resconv3(b, pre, h, in, out, out, 0, 0);
		break;
	}
	case D_DOWN:
	case D_ATTN:
		P(p, "%s.down", pre);
		h = nn_cubic1d(b->c, p, h, 0);
		h = resconv3(b, pre, h, in, out, out, u->down[i] == D_ATTN, 0);
		break;
	case D_RESNET:
		P(p, "%s.resnets.0", pre);
		h = rtb(b, p, h, in, out);
		for (int j = 1; j <= u->layers; j++) {
			P(p, "%s.resnets.%d", pre, j);
			h = rtb(b, p, h, out, out);
		}
		b->skips[b->ns++] = h; /* taken before the downsampling */
		if (!final || u->down_each) {
			P(p, "%s.downsample", pre);
			h = down1d(b, p, h, out);
		}
		return h;
	}
	b->skips[b->ns++] = h;
	return h;
}

static int mid_block(builder *b, int h)
{
	const unet1d_config *u = b->u;
	int ch = u->boc[u->n_boc - 1];
	char p[300];
	switch (u->mid) {
	case M_UNET:
		h = nn_cubic1d(b->c, "mid_block.down", h, 0);
		for (int j = 0; j < 6; j++) {
			P(p, "mid_block.resnets.%d", j);
			h = nn_resconv1d(b->c, p, h, ch, ch, ch, 0);
			P(p, "mid_block.attentions.%d", j);
			h = attn1d(b, p, h, ch);
		}
		return nn_cubic1d(b->c, "mid_block.up", h, 1);
	case M_RESTEMPORAL:
		h = rtb(b, "mid_block.resnets.0", h, ch, ch);
		for (int j = 1; j <= u->layers; j++) {
			P(p, "mid_block.resnets.%d", j);
			h = rtb(b, p, h, ch, ch);
		}
		return h;
	case M_VALUE:
		h = rtb(b, "mid_block.res1", h, ch, ch / 2);
		h = down1d(b, "mid_block.down1", h, ch / 2);
		h = rtb(b, "mid_block.res2", h, ch / 2, ch / 4);
		return down1d(b, "mid_block.down2", h, ch / 4);
	}
	return -1;
}

static int up_block(builder *b, int i, int h, int in, int out)
{
	const unet1d_config *u = b->u;
	char pre[64], p[300];
	int skip = b->ns ? b->skips[--b->ns] : -1;
	P(pre, "up_blocks.%d", i);
	h = op_concat(b->c->g, h, skip);
	switch (u->up[i]) {
	case U_ATTN:
		h = resconv3(b, pre, h, 2 * in, out, out, 1, 0);
		P(p, "%s.up", pre);
		return nn_cubic1d(b->c, p, h, 1);
	case U_UP: /* mid_channels defaults to in_channels here */
		h = resconv3(b, pre, h, 2 * in, in, out, 0, 0);
		P(p, "%s.up", pre);
		return nn_cubic1d(b->c, p, h, 1);
	case U_NOSKIP:
		return resconv3(b, pre, h, 2 * in, in, out, 0, 1);
	case U_RESNET:
		P(p, "%s.resnets.0", pre);
		h = rtb(b, p, h, 2 * in, out);
		for (int j = 1; j <= u->layers; j++) {
			P(p, "%s.resnets.%d", pre, j);
			h = rtb(b, p, h, out, out);
		}
		/* add_upsample = not is_final_block, with is_final_block counted over
		 * block_out_channels */
		if (i != u->n_boc - 1) {
			P(p, "%s.upsample.conv", pre);
			h = nn_conv_transpose1d(b->c, p, h, out, out, 4, 1);
		}
		return h;
	}
	return -1;
}

static int out_block(builder *b, int h)
{
	const unet1d_config *u = b->u;
	int e = u->boc[0];
	conv_args a;
	if (u->out == O_CONV) {
		conv_args_init(&a, 0);
		a.pad_l = a.pad_r = 2;
		h = nn_conv1d(b->c, "out_block.final_conv1d_1", h, e, e, 5, 1, &a);
		h = nn_group_norm(b->c, "out_block.final_conv1d_gn", h, u->groups, 1e-5f, 1, -1, u->act);
		conv_args_init(&a, 0);
		return nn_conv1d(b->c, "out_block.final_conv1d_2", h, e, u->out_ch, 1, 1, &a);
	}
	if (u->out == O_VALUE) { /* flatten, cat the time embedding, two linears */
		const cu_tensor *t;
		int fc = u->boc[u->n_boc - 1] / 4;
		if (b->c->g->status)
			return -1;
		t = cu_t(b->c->g, h);
		h = cu_reshape(b->c->g, h, 2, (int64_t[]){ t->ne[0], t->ne[1] * t->ne[2] });
		h = op_concat(b->c->g, h, b->temb);
		h = nn_linear(b->c, "out_block.final_block.0", h, fc + e, fc / 2, 1, u->act);
		return nn_linear(b->c, "out_block.final_block.2", h, fc / 2, 1, 1, CU_ACT_NONE);
	}
	return h;
}

static int build(model *m, nn_ctx *c, const model_inputs *mi)
{
	const unet1d_config *u = m->config;
	cu_graph *g = c->g;
	builder b;
	int x, t, h, in, e = u->boc[0];
	memset(&b, 0, sizeof(b));
	b.c = c;
	b.u = u;
	x = cu_graph_input(g, 0, CU_F32, 3, mi->slot[0].ne);
	t = cu_graph_input(g, 1, CU_F32, 1, mi->slot[1].ne);

	if (u->temb == TE_FOURIER) {
		int64_t w = u->fourier_width;
		b.temb = op_fourier_embed(g, t, nn_weight(c, NN_W_FOURIER, 1, &w, "time_proj.weight"), 0,
					  u->flip);
	} else {
		b.temb = op_timestep_embed(g, t, e, u->flip, u->shift);
	}
	if (u->mlp) {
		/* in_channels: 2 * boc[0] for fourier in v0.26.3, the projection's width later */
		int tin = u->temb == TE_POSITIONAL ? e
			  : u->fourier_width == 8 ? 2 * e : 2 * u->fourier_width;
		b.temb = nn_timestep_embedding(c, "time_mlp", b.temb, tin, 4 * e, e, u->act);
	}

	h = x;
	in = u->in_ch + u->extra_in;
	for (int i = 0; i < u->n_down; i++) {
		h = down_block(&b, i, h, in);
		in = u->boc[i];
	}
	h = mid_block(&b, h);
	{
		int prev = u->boc[u->n_boc - 1];
		for (int i = 0; i < u->n_up; i++) {
			/* reversed block_out_channels; the last up block ends at out_channels
			 * (or block_out_channels[0] when an out block follows) */
			int out = i < u->n_up - 1 ? u->boc[u->n_boc - 2 - i]
						  : (u->out == O_NONE ? u->out_ch : u->boc[0]);
			h = up_block(&b, i, h, prev, out);
			prev = out;
		}
	}
	return out_block(&b, h);
}

/* ------------------------------------------------------------ examples */

static clunet_status example_inputs(model *m, const clunet_example_shape *s, clunet_tensor *out,
				    size_t *n, void **storage)
{
	const unet1d_config *u = m->config;
	int batch = s->batch > 0 ? s->batch : 1;
	int64_t len = s->length > 0 ? s->length : u->sample_size;
	char why[256];
	float *buf;
	cu_rng r;
	if (len <= 0 || s->length < 0 || !fits(u, len, why, sizeof(why))) {
		if (s->length > 0) /* asked for: say why it does not fit */
			return check_length(u, len);
		for (len = 1; len <= (1 << 24) && !fits(u, len, why, sizeof(why)); len *= 2)
			;
	}
	buf = cu_calloc((size_t)batch * u->in_ch * len + batch, sizeof(float));
	if (!buf)
		return CLUNET_ERR_HOST_MEMORY;
	cu_rng_seed(&r, s->seed);
	for (size_t i = 0; i < (size_t)batch * u->in_ch * len; i++)
		buf[i] = cu_rng_normal(&r);
	for (int i = 0; i < batch; i++) /* Dance Diffusion runs t in (0, 1]; RL uses step numbers */
		buf[(size_t)batch * u->in_ch * len + i] = u->mlp ? (float)(10 + 7 * i) : 0.5f;
	memset(out, 0, 2 * sizeof(clunet_tensor));
	out[0] = (clunet_tensor){ "sample", CLUNET_F32, 3, { batch, u->in_ch, len }, buf, 0 };
	out[1] = (clunet_tensor){ "timestep", CLUNET_F32, 1, { batch },
				  buf + (size_t)batch * u->in_ch * len, 0 };
	*n = 2;
	*storage = buf;
	return CLUNET_OK;
}

const model_vt unet1d_vt = {
	.class_name = "UNet1DModel",
	.parse_config = parse_config,
	.prepare_inputs = prepare_inputs,
	.load_inputs = load_inputs,
	.build = build,
	.example_inputs = example_inputs,
	.deprecated_attention = 0,
};
