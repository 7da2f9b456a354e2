/* ResnetBlock2D, spatial attention and the 2-D resamplers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

#define P(buf, fmt, ...) snprintf(buf, sizeof(buf), fmt, __VA_ARGS__)

int nn_downsample2d_conv(nn_ctx *c, const char *prefix, int x, int ch, int out_ch, int padding)
{
	char p[512];
	conv_args a;
	conv_args_init(&a, padding);
	a.stride = 2;
	if (padding == 0) { /* F.pad(x, (0, 1, 0, 1)) before the conv */
		a.pad_b = 1;
		a.pad_r = 1;
	}
	P(p, "%s.conv", prefix);
	return nn_conv2d(c, p, x, ch, out_ch, 3, 1, &a);
}

int nn_upsample2d_conv(nn_ctx *c, const char *prefix, int x, int ch, int out_ch)
{
	char p[512];
	conv_args a;
	conv_args_init(&a, 1);
	a.upsample = 1;
	P(p, "%s.conv", prefix);
	return nn_conv2d(c, p, x, ch, out_ch, 3, 1, &a);
}

/* upsample_2d / downsample_2d with kernel (1, 3, 3, 1): the 2-D kernel
 * outer(k, k) / sum * gain (* factor^2 when upsampling) is separable, with
 * taps k / 8 (down) or k / 4 (up). */
int nn_fir_down(nn_ctx *c, int x)
{
	static const float taps[4] = { 1.0f / 8, 3.0f / 8, 3.0f / 8, 1.0f / 8 };
	int k = nn_const(c, "#fir_down_1331", 1, (int64_t[]){ 4 }, taps);
	return op_upfirdn2d(c->g, x, k, 1, 2, 1, 1);
}

int nn_fir_up(nn_ctx *c, int x)
{
	static const float taps[4] = { 1.0f / 4, 3.0f / 4, 3.0f / 4, 1.0f / 4 };
	int k = nn_const(c, "#fir_up_1331", 1, (int64_t[]){ 4 }, taps);
	return op_upfirdn2d(c->g, x, k, 2, 1, 2, 1);
}

void nn_resnet2d_cfg_init(nn_resnet2d_cfg *r, int in_ch, int out_ch, int groups, float eps,
			  cu_act act, int scale_shift, int temb_ch)
{
	memset(r, 0, sizeof(*r));
	r->in_ch = in_ch;
	r->out_ch = out_ch;
	r->groups = r->groups_out = groups;
	r->eps = eps;
	r->act = act;
	r->scale_shift = scale_shift;
	r->has_temb = temb_ch > 0;
	r->temb_ch = temb_ch;
	r->output_scale = 1.0f;
	r->use_in_shortcut = -1;
}

static int resample(nn_ctx *c, int x, const nn_resnet2d_cfg *r)
{
	const cu_tensor *t;
	if (r->resample == NN_RESAMPLE_NONE || x < 0)
		return x;
	if (r->resample == NN_RESAMPLE_UP) {
		if (r->fir)
			return nn_fir_up(c, x);
		t = cu_t(c->g, x);
		return op_nearest(c->g, x, (int)t->ne[2] * 2, (int)t->ne[3] * 2);
	}
	return r->fir ? nn_fir_down(c, x) : op_avgpool2(c->g, x);
}

int nn_resnet2d(nn_ctx *c, const char *prefix, int x, const nn_resnet2d_cfg *r)
{
	char p[512];
	int h, input = x, t = -1, shortcut;
	conv_args a1, a2;

	P(p, "%s.norm1", prefix);
	h = nn_group_norm(c, p, x, r->groups, r->eps, 1, -1, r->act);
	h = resample(c, h, r);
	input = resample(c, input, r);

	if (r->has_temb) {
		int temb = r->skip_time_act ? nn_temb_act(c, CU_ACT_NONE) : nn_temb_act(c, r->act);
		P(p, "%s.time_emb_proj", prefix);
		t = nn_linear(c, p, temb, r->temb_ch, r->scale_shift ? 2 * r->out_ch : r->out_ch, 1,
			      CU_ACT_NONE);
	}
	conv_args_init(&a1, 1);
	if (!r->scale_shift)
		a1.bias2 = t; /* hidden_states + temb[:, :, None, None], before norm2 */
	P(p, "%s.conv1", prefix);
	h = nn_conv2d(c, p, h, r->in_ch, r->out_ch, 3, 1, &a1);

	P(p, "%s.norm2", prefix);
	h = nn_group_norm(c, p, h, r->groups_out, r->eps, 1, r->scale_shift ? t : -1, r->act);

	shortcut = r->use_in_shortcut < 0 ? r->in_ch != r->out_ch : r->use_in_shortcut;
	if (shortcut) {
		conv_args as;
		conv_args_init(&as, 0);
		P(p, "%s.conv_shortcut", prefix);
		input = nn_conv2d(c, p, input, r->in_ch, r->out_ch, 1, 1, &as);
	}
	conv_args_init(&a2, 1);
	a2.res = input;
	a2.out_div = r->output_scale;
	P(p, "%s.conv2", prefix);
	return nn_conv2d(c, p, h, r->out_ch, r->out_ch, 3, 1, &a2);
}

/* The score matrix is materialised (two GEMMs and a softmax, fast) while it
 * is small; beyond 32 MiB the fused kernel runs instead, so memory stays
 * linear in the sequence. CLUNET_ATTENTION=fused|plain forces one. */
int nn_attention_fused(const nn_ctx *c, int64_t score_elems, int lq)
{
	const char *e = getenv("CLUNET_ATTENTION");
	if (e && !strcmp(e, "fused"))
		return 1;
	if (e && !strcmp(e, "plain"))
		return 0;
	if (c->attn_kernel >= 0)
		return c->attn_kernel;
	/* CPU-class devices with 16 queries or more: the query-lane fused kernel
	 * beats GEMM + softmax + GEMM at every UNet shape (SD 1.5 at 64x64: all
	 * attention 1.8 s fused against 2.2 s mixed), unless slicing was asked for */
	if (c->rt->is_cpu && lq >= 16 && c->attn_slice <= 0)
		return 1;
	return score_elems * 4 > (32ll << 20);
}

/* The plain path over bh batch-heads: scores = scale q^T k, softmax (+ the
 * mask, one row per item of heads heads), out = v p^T, written into o
 * ([bh][d][lq], channel-major like q, k, v). On CPU-class devices the
 * products take the forms the packed GEMM is fast at: q transposed first
 * (its rows lq apart, a power-of-two stride, put A's reads into a few cache
 * sets), and the output token-major (p v^T, packed; v p^T would read the
 * score matrix through the dot-product kernel) and transposed into o: SD
 * 1.5's level-1 self-attention products on an AVX-512 EPYC 47 + 92 ms ->
 * 35 + 36 ms, the 77-token cross-attention ones 0.9 + 7.1 -> 0.7 + 0.6 ms,
 * each plus two transposes (SD 1.5's 64 of them: 98 ms of the forward). */
static int attention_plain(nn_ctx *c, int q, int k, int v, int mask, int bh, int heads, int d,
			   int lq, int lk, int o)
{
	cu_graph *g = c->g;
	const int cpu = c->rt->is_cpu;
	/* scores[b, i, j] = scale * sum_e q[b, e, i] k[b, e, j]: on CPU-class
	 * devices over qt[b, i, e], q transposed */
	const gemm_args sa = { .trans_a = !cpu, .m = lq, .n = lk, .k = d, .lda = cpu ? d : lq,
			       .ldb = lk, .ldc = lk, .stride_a = (long)d * lq,
			       .stride_b = (long)d * lk, .stride_c = (long)lq * lk, .batch = bh,
			       .alpha = (float)(1.0 / sqrt((double)d)) };
	/* out[b, e, i] = sum_j v[b, e, j] p[b, i, j]; on CPU-class devices
	 * outt[b, i, e] = sum_j p[b, i, j] v[b, e, j], then transposed */
	const gemm_args oa = { .trans_b = 1, .m = d, .n = lq, .k = lk, .lda = lk, .ldb = lk,
			       .ldc = lq, .stride_a = (long)d * lk, .stride_b = (long)lq * lk,
			       .stride_c = (long)d * lq, .batch = bh, .alpha = 1.0f };
	const gemm_args ota = { .trans_b = 1, .m = lq, .n = d, .k = lk, .lda = lk, .ldb = lk,
				.ldc = d, .stride_a = (long)lq * lk, .stride_b = (long)d * lk,
				.stride_c = (long)lq * d, .batch = bh, .alpha = 1.0f };
	int s = op_gemm(g, cpu ? op_transpose(g, q, bh, d, lq) : q, k, &sa, 3,
			(int64_t[]){ bh, lq, lk });
	s = mask >= 0 ? op_softmax_bias(g, s, mask, heads * lq) : op_softmax(g, s, 1.0f);
	if (cpu)
		return op_transpose_into(g, op_gemm(g, s, v, &ota, 3, (int64_t[]){ bh, lq, d }), bh,
					 lq, d, o);
	return op_gemm_into(g, v, s, &oa, o);
}

/* One slice of the plain path: heads [h0, h0 + hs) of item b, written
 * into its part of the output o. */
static void attention_slice(nn_ctx *c, int q, int k, int v, int mask, int heads, int d, int lq,
			    int lk, int b, int h0, int hs, int o)
{
	cu_graph *g = c->g;
	int64_t bh0 = (int64_t)b * heads + h0;
	int qv = cu_view(g, q, bh0 * d * lq, 3, (int64_t[]){ hs, d, lq });
	int kv = cu_view(g, k, bh0 * d * lk, 3, (int64_t[]){ hs, d, lk });
	int vv = cu_view(g, v, bh0 * d * lk, 3, (int64_t[]){ hs, d, lk });
	int ov = cu_view(g, o, bh0 * d * lq, 3, (int64_t[]){ hs, d, lq });
	int mv = mask >= 0 ? cu_view(g, mask, (int64_t)b * lk, 2, (int64_t[]){ 1, lk }) : -1;
	attention_plain(c, qv, kv, vv, mv, hs, hs, d, lq, lk, ov);
}

/* softmax(q k^T / sqrt(d) + mask) v over channel-major q [N*heads][d][lq],
 * k, v [N*heads][d][lk]: the plain path (GEMM, softmax, GEMM) or the fused
 * kernel, by the size of the score matrix. */
int nn_attention_core(nn_ctx *c, int q, int k, int v, int mask, int n, int heads, int d, int lq,
		      int lk, int out_ndim, const int64_t *out_ne)
{
	int o;
	if (nn_attention_fused(c, (int64_t)n * heads * lq * lk, lq))
		return op_attention_fused(c->g, q, k, v, mask, heads, n * heads, d, lq, lk,
					  (float)(1.0 / sqrt((double)d)), out_ndim, out_ne);
	o = cu_graph_act(c->g, out_ndim, out_ne);
	if (c->attn_slice > 0) { /* set_attention_slice: one score block at a time */
		int hs = c->attn_slice;
		if (hs > heads)
			hs = heads;
		for (int b = 0; b < n; b++)
			for (int h0 = 0; h0 < heads; h0 += hs)
				attention_slice(c, q, k, v, mask, heads, d, lq, lk, b, h0,
						h0 + hs <= heads ? hs : heads - h0, o);
	} else {
		attention_plain(c, q, k, v, mask, n * heads, heads, d, lq, lk, o);
	}
	return c->g->status ? -1 : o;
}

/* Channels [k * inner, (k + 1) * inner) of the stacked projection y: a
 * view when there is one item, else a copy. */
static int part(nn_ctx *c, int y, int k, int inner)
{
	const cu_tensor *t = cu_t(c->g, y);
	int64_t ne[CU_MAXD];
	int64_t per = cu_numel(t) / (t->ne[0] * t->ne[1]);
	if (t->ne[0] == 1) {
		memcpy(ne, t->ne, sizeof(ne));
		ne[1] = inner;
		return cu_view(c->g, y, (int64_t)k * inner * per, t->ndim, ne);
	}
	return op_slice_channels(c->g, y, k * inner, inner);
}

/* fuse_qkv_projections(): one projection for q, k, v (self-attention) or
 * for k, v (cross-attention). Sets *q = -1 (and builds nothing) where the
 * layers carry an unfused LoRA. Returns 0 on a graph error. */
static int fused_projections(nn_ctx *c, const char *prefix, const nn_attn_cfg *a, int h, int kv,
			     int ch, int ctx_ch, int inner, int *q, int *k, int *v)
{
	char names[3][560], key[600];
	const char *pre[3] = { names[0], names[1], names[2] };
	int outs[3] = { inner, inner, inner }, bias = -1, w, y, self = !a->ctx_dim;
	conv_args ca;
	P(names[0], "%s.%s", prefix, a->names_1d ? "query" : "to_q");
	P(names[1], "%s.%s", prefix, a->names_1d ? "key" : "to_k");
	P(names[2], "%s.%s", prefix, a->names_1d ? "value" : "to_v");
	*q = -1;
	for (int i = 0; i < 3; i++)
		if (nn_has_lora(c, names[i]))
			return 1;
	conv_args_init(&ca, 0);
	if (self) {
		P(key, "%s.to_qkv", prefix);
		w = nn_stacked_linear(c, key, pre, 3, outs, ch, !a->no_qkv_bias, &bias);
		ca.bias = bias;
		y = op_conv2d(c->g, h, w, 3 * inner, 1, 1, &ca);
		if (c->g->status)
			return 0;
		*q = part(c, y, 0, inner);
		*k = part(c, y, 1, inner);
		*v = part(c, y, 2, inner);
	} else {
		P(key, "%s.to_kv", prefix);
		w = nn_stacked_linear(c, key, pre + 1, 2, outs, ctx_ch, !a->no_qkv_bias, &bias);
		ca.bias = bias;
		y = op_conv2d(c->g, kv, w, 2 * inner, 1, 1, &ca);
		*q = nn_linear(c, names[0], h, ch, inner, !a->no_qkv_bias, CU_ACT_NONE);
		if (c->g->status)
			return 0;
		*k = part(c, y, 0, inner);
		*v = part(c, y, 1, inner);
	}
	return !c->g->status;
}

int nn_attention(nn_ctx *c, const char *prefix, int x, int ctx, int mask, int res,
		 const nn_attn_cfg *a)
{
	char p[512];
	const cu_tensor *xt;
	int n, ch, hh, ww, lq, lk, inner, d = a->dim_head, heads = a->heads, h, kv, q, k, v, o;
	int one_d, qkv_bias = !a->no_qkv_bias, ctx_ch, pitch;
	conv_args ca;

	if (c->g->status || x < 0 || (a->ctx_dim && ctx < 0))
		return cu_graph_fail(c->g, c->g->status ? c->g->status : CLUNET_ERR_ARGUMENT);
	xt = cu_t(c->g, x); /* read now: building moves the tensor array */
	n = (int)xt->ne[0];
	ch = (int)xt->ne[1];
	hh = xt->ndim == 4 ? (int)xt->ne[2] : 1;
	ww = (int)xt->ne[xt->ndim - 1];
	one_d = xt->ndim == 3;
	lq = hh * ww;
	lk = a->ctx_dim ? (int)cu_t(c->g, ctx)->ne[2] : lq;
	ctx_ch = a->ctx_dim ? a->ctx_dim : ch;
	inner = heads * d;

	h = x;
	if (a->groups > 0) {
		P(p, "%s.group_norm", prefix);
		h = nn_group_norm(c, p, x, a->groups, a->eps, 1, -1, CU_ACT_NONE);
	}
	kv = a->ctx_dim ? ctx : h;
	/* the projections run channel-major: q [N, inner, Lq], k and v [N, inner, Lk] */
	if (c->fused_qkv && !fused_projections(c, prefix, a, h, kv, ch, ctx_ch, inner, &q, &k, &v))
		return -1;
	if (!c->fused_qkv || q < 0) {
		P(p, "%s.%s", prefix, a->names_1d ? "query" : "to_q");
		q = nn_linear(c, p, h, ch, inner, qkv_bias, CU_ACT_NONE);
		P(p, "%s.%s", prefix, a->names_1d ? "key" : "to_k");
		k = nn_linear(c, p, kv, ctx_ch, inner, qkv_bias, CU_ACT_NONE);
		P(p, "%s.%s", prefix, a->names_1d ? "value" : "to_v");
		v = nn_linear(c, p, kv, ctx_ch, inner, qkv_bias, CU_ACT_NONE);
	}
	if (mask >= 0 && cu_numel(cu_t(c->g, mask)) != (int64_t)n * lk) {
		cu_fail(CLUNET_ERR_INPUT, "%s: the attention mask has %lld values per item, but the "
			"attention has %d keys", prefix, (long long)(cu_numel(cu_t(c->g, mask)) / n), lk);
		return cu_graph_fail(c->g, CLUNET_ERR_INPUT);
	}

	conv_args_init(&ca, 0);
	ca.res = res;
	ca.out_div = a->rescale ? a->rescale : 1.0f;
	P(p, "%s.%s", prefix, a->names_1d ? "proj_attn" : "to_out.0");
	/* the fused kernel writes straight into the output projection's padded
	 * input where conv_pv runs it: no pad copy, and output rows that are not
	 * a power of two apart (SD 1.5's level-1 cross-attention 5-7 % faster) */
	pitch = !one_d && nn_attention_fused(c, (int64_t)n * heads * lq * lk, lq)
			? nn_linear_pitch(c, p, inner, ch, hh, ww)
			: 0;
	if (pitch) {
		o = cu_graph_act(c->g, 3, (int64_t[]){ n, inner, pitch });
		o = op_attention_fused_into(c->g, q, k, v, mask, heads, n * heads, d, lq, lk,
					    (float)(1.0 / sqrt((double)d)), o, pitch);
		return nn_linear_padded(c, p, o, hh, ww, inner, ch, 1, &ca);
	}
	o = nn_attention_core(c, q, k, v, mask, n, heads, d, lq, lk, 4,
			      (int64_t[]){ n, inner, hh, ww });
	if (one_d) /* back to [N, C, L] */
		o = cu_reshape(c->g, o, 3, (int64_t[]){ n, inner, ww });
	return nn_linear_ex(c, p, o, inner, ch, 1, &ca);
}

int nn_spatial_attention(nn_ctx *c, const char *prefix, int x, const nn_attn_cfg *a)
{
	return nn_attention(c, prefix, x, -1, -1, a->residual ? x : -1, a);
}

/* ---- 1-D blocks ---- */

int nn_cubic1d(nn_ctx *c, const char *prefix, int x, int up)
{
	int k = nn_weight(c, up ? NN_W_CUBIC_UP : NN_W_CUBIC_DOWN, 1, (int64_t[]){ 8 }, "%s.kernel",
			  prefix);
	return op_resample1d(c->g, x, k, up);
}

int nn_resconv1d(nn_ctx *c, const char *prefix, int x, int in, int mid, int out, int is_last)
{
	char p[512];
	int res = x, h;
	conv_args a;
	if (in != out) {
		conv_args_init(&a, 0);
		P(p, "%s.conv_skip", prefix);
		res = nn_conv1d(c, p, x, in, out, 1, 0, &a);
	}
	conv_args_init(&a, 2);
	P(p, "%s.conv_1", prefix);
	h = nn_conv1d(c, p, x, in, mid, 5, 1, &a);
	P(p, "%s.group_norm_1", prefix);
	h = nn_group_norm(c, p, h, 1, 1e-5f, 1, -1, CU_ACT_GELU);
	conv_args_init(&a, 2);
	if (is_last)
		a.res = res; /* conv_2 + residual */
	P(p, "%s.conv_2", prefix);
	h = nn_conv1d(c, p, h, mid, out, 5, 1, &a);
	if (is_last)
		return h;
	P(p, "%s.group_norm_2", prefix);
	return nn_group_norm_ex(c, p, h, 1, 1e-5f, -1, CU_ACT_GELU, -1, res);
}

int nn_residual_temporal1d(nn_ctx *c, const char *prefix, int x, int t, int in, int out, int embed)
{
	char p[512];
	int h, res = x;
	conv_args a;
	P(p, "%s.time_emb", prefix);
	t = nn_linear(c, p, op_act(c->g, t, CU_ACT_MISH), embed, out, 1, CU_ACT_NONE);
	if (in != out) {
		conv_args_init(&a, 0);
		P(p, "%s.residual_conv", prefix);
		res = nn_conv1d(c, p, x, in, out, 1, 1, &a);
	}
	/* conv_in: Conv1d(k5) -> GroupNorm(8) -> Mish, then + t[:, :, None] */
	conv_args_init(&a, 2);
	P(p, "%s.conv_in.conv1d", prefix);
	h = nn_conv1d(c, p, x, in, out, 5, 1, &a);
	P(p, "%s.conv_in.group_norm", prefix);
	h = nn_group_norm_ex(c, p, h, 8, 1e-5f, -1, CU_ACT_MISH, t, -1);
	/* conv_out, then + residual_conv(x) */
	conv_args_init(&a, 2);
	P(p, "%s.conv_out.conv1d", prefix);
	h = nn_conv1d(c, p, h, out, out, 5, 1, &a);
	P(p, "%s.conv_out.group_norm", prefix);
	return nn_group_norm_ex(c, p, h, 8, 1e-5f, -1, CU_ACT_MISH, -1, res);
}

/* ---- Transformer2DModel / BasicTransformerBlock (models/attention.py) ---- */

static int layer_norm(nn_ctx *c, const char *prefix, int x, float eps)
{
	int64_t ch;
	if (c->g->status || x < 0)
		return -1;
	ch = cu_t(c->g, x)->ne[1];
	return op_layer_norm(c->g, x, nn_weight(c, NN_W_NORM_SCALE, 1, &ch, "%s.weight", prefix),
			     nn_weight(c, NN_W_NORM_SHIFT, 1, &ch, "%s.bias", prefix), eps);
}

/* LN -> attn1 (+h) -> [LN -> attn2 (+h)] -> LN -> GEGLU feed-forward (+h),
 * all channel-major over [N, dim, H, W]. */
static int basic_transformer(nn_ctx *c, const char *prefix, int h, int ctx, int self_mask,
			     int cross_mask, const nn_transformer_cfg *t, int dim)
{
	char p[560]; /* the prefix (< 512) and a suffix */
	nn_attn_cfg a;
	conv_args ca;
	int nrm, f;
	memset(&a, 0, sizeof(a));
	a.heads = t->heads;
	a.dim_head = t->dim_head;
	a.no_qkv_bias = 1; /* attention_bias=False; to_out keeps its bias */
	a.channels = dim;

	P(p, "%s.norm1", prefix);
	nrm = layer_norm(c, p, h, 1e-5f);
	a.ctx_dim = t->only_cross ? t->cross_dim : 0;
	P(p, "%s.attn1", prefix);
	h = nn_attention(c, p, nrm, t->only_cross ? ctx : -1, self_mask, h, &a);
	if (t->cross_dim || t->double_self) {
		P(p, "%s.norm2", prefix);
		nrm = layer_norm(c, p, h, 1e-5f);
		a.ctx_dim = t->double_self ? 0 : t->cross_dim;
		P(p, "%s.attn2", prefix);
		h = nn_attention(c, p, nrm, t->double_self ? -1 : ctx, t->double_self ? -1 : cross_mask,
				 h, &a);
	}
	P(p, "%s.norm3", prefix);
	nrm = layer_norm(c, p, h, 1e-5f);
	P(p, "%s.ff.net.0.proj", prefix);
	f = nn_linear_geglu(c, p, nrm, dim, 8 * dim);
	conv_args_init(&ca, 0);
	ca.res = h;
	P(p, "%s.ff.net.2", prefix);
	return nn_linear_ex(c, p, f, 4 * dim, dim, 1, &ca);
}

int nn_transformer2d(nn_ctx *c, const char *prefix, int x, int ctx, int self_mask, int cross_mask,
		     const nn_transformer_cfg *t)
{
	char p[512];
	int h, inner = t->heads * t->dim_head;
	conv_args ca;
	P(p, "%s.norm", prefix);
	h = nn_group_norm(c, p, x, t->groups, 1e-6f, 1, -1, CU_ACT_NONE);
	P(p, "%s.proj_in", prefix);
	if (t->linear_proj) {
		h = nn_linear(c, p, h, t->channels, inner, 1, CU_ACT_NONE);
	} else {
		conv_args_init(&ca, 0);
		h = nn_conv2d(c, p, h, t->channels, inner, 1, 1, &ca);
	}
	for (int i = 0; i < t->layers; i++) {
		P(p, "%s.transformer_blocks.%d", prefix, i);
		h = basic_transformer(c, p, h, ctx, self_mask, cross_mask, t, inner);
	}
	conv_args_init(&ca, 0);
	ca.res = x; /* output = proj_out(h) + residual */
	P(p, "%s.proj_out", prefix);
	if (t->linear_proj)
		return nn_linear_ex(c, p, h, inner, t->channels, 1, &ca);
	return nn_conv2d(c, p, h, inner, t->channels, 1, 1, &ca);
}
