/* Elementwise, resampling and embedding ops (cl/ewise.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

#define EWISE_OPTS "-cl-std=CL1.2"

static int bad(cu_graph *g, const char *fmt, const cu_tensor *t)
{
	char s[96];
	cu_fail(CLUNET_ERR_ARGUMENT, fmt, cu_shape_str(t, s, sizeof(s)));
	return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
}

static int begin(cu_graph *g, int x)
{
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	return 0;
}

static int nhw(const cu_tensor *t, int *planes, int *h, int *w)
{
	*planes = *h = *w = 0;
	if (t->ndim != 4)
		return 0;
	*planes = (int)(t->ne[0] * t->ne[1]);
	*h = (int)t->ne[2];
	*w = (int)t->ne[3];
	return 1;
}

/* ---- act ---- */

static clunet_status act_prepare(cu_plan *p, cu_op *op)
{
	int n = (int)cu_numel(cu_t(p->g, op->out));
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "act_f32");
	if (!st)
		st = cu_set_args(p, op, "ttii", op->in[0], op->out, n, op->ip[0]);
	cu_op_range(op, 1, (size_t)n, 1, 1);
	return st;
}
static const cu_op_impl act_impl = { .kind = "activation", .prepare = act_prepare };

int op_act(cu_graph *g, int x, cu_act act)
{
	int y, opi;
	if (begin(g, x))
		return -1;
	y = cu_graph_act(g, cu_t(g, x)->ndim, cu_t(g, x)->ne);
	opi = cu_graph_op(g, &act_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = act;
	return y;
}

/* ---- add ---- */

static clunet_status add_prepare(cu_plan *p, cu_op *op)
{
	int n = (int)cu_numel(cu_t(p->g, op->out));
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "add_f32");
	if (!st)
		st = cu_set_args(p, op, "ttti", op->in[0], op->in[1], op->out, n);
	cu_op_range(op, 1, (size_t)n, 1, 1);
	return st;
}
static const cu_op_impl add_impl = { .kind = "add", .prepare = add_prepare };

int op_add(cu_graph *g, int a, int b)
{
	int in[2] = { a, b }, y;
	if (begin(g, a) || begin(g, b))
		return -1;
	if (cu_numel(cu_t(g, a)) != cu_numel(cu_t(g, b)))
		return bad(g, "add: operand shapes differ (%s)", cu_t(g, b));
	y = cu_graph_act(g, cu_t(g, a)->ndim, cu_t(g, a)->ne);
	return cu_graph_op(g, &add_impl, in, 2, y) < 0 ? -1 : y;
}

/* ---- affine ---- */

static clunet_status affine_prepare(cu_plan *p, cu_op *op)
{
	int n = (int)cu_numel(cu_t(p->g, op->out));
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "affine_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiff", op->in[0], op->out, n, (double)op->fp[0],
				 (double)op->fp[1]);
	cu_op_range(op, 1, (size_t)n, 1, 1);
	return st;
}
static const cu_op_impl affine_impl = { .kind = "affine", .prepare = affine_prepare };

int op_affine(cu_graph *g, int x, float alpha, float beta)
{
	int y, opi;
	if (begin(g, x))
		return -1;
	y = cu_graph_act(g, cu_t(g, x)->ndim, cu_t(g, x)->ne);
	opi = cu_graph_op(g, &affine_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].fp[0] = alpha;
	g->ops[opi].fp[1] = beta;
	return y;
}

/* ---- div_rows ---- */

static clunet_status div_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int n = (int)cu_numel(x), inner = (int)(n / x->ne[0]);
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "div_rows_f32");
	if (!st)
		st = cu_set_args(p, op, "tttii", op->in[0], op->in[1], op->out, n, inner);
	cu_op_range(op, 1, (size_t)n, 1, 1);
	return st;
}
static const cu_op_impl div_impl = { .kind = "div", .prepare = div_prepare };

int op_div_rows(cu_graph *g, int x, int d)
{
	int in[2] = { x, d }, y;
	if (begin(g, x) || begin(g, d))
		return -1;
	if (cu_numel(cu_t(g, d)) != cu_t(g, x)->ne[0])
		return bad(g, "div_rows: divisor %s is not one value per batch item", cu_t(g, d));
	y = cu_graph_act(g, cu_t(g, x)->ndim, cu_t(g, x)->ne);
	return cu_graph_op(g, &div_impl, in, 2, y) < 0 ? -1 : y;
}

/* ---- concat ---- */

static clunet_status concat_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *a = cu_t(p->g, op->in[0]), *b = cu_t(p->g, op->in[1]);
	int n = (int)cu_numel(cu_t(p->g, op->out));
	int hw = (int)(cu_numel(a) / (a->ne[0] * a->ne[1]));
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "concat_f32");
	if (!st)
		st = cu_set_args(p, op, "tttiiii", op->in[0], op->in[1], op->out, n, (int)a->ne[1],
				 (int)b->ne[1], hw);
	cu_op_range(op, 1, (size_t)n, 1, 1);
	return st;
}
static const cu_op_impl concat_impl = { .kind = "concat", .prepare = concat_prepare };

int op_concat(cu_graph *g, int a, int b)
{
	int in[2] = { a, b }, y;
	const cu_tensor *ta, *tb;
	int64_t ne[CU_MAXD];
	if (begin(g, a) || begin(g, b))
		return -1;
	ta = cu_t(g, a);
	tb = cu_t(g, b);
	if (ta->ndim != tb->ndim || ta->ndim < 2 || ta->ne[0] != tb->ne[0])
		return bad(g, "concat: operands differ in rank or batch (%s)", tb);
	for (int i = 2; i < ta->ndim; i++)
		if (ta->ne[i] != tb->ne[i])
			return bad(g, "concat: spatial sizes differ (%s)", tb);
	memcpy(ne, ta->ne, sizeof(ne));
	ne[1] = ta->ne[1] + tb->ne[1];
	y = cu_graph_act(g, ta->ndim, ne);
	return cu_graph_op(g, &concat_impl, in, 2, y) < 0 ? -1 : y;
}

/* ---- channel slice ---- */

static clunet_status slice_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]), *y = cu_t(p->g, op->out);
	int total = (int)cu_numel(y), np = (int)(cu_numel(x) / (x->ne[0] * x->ne[1]));
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "slice_channels_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiiii", op->in[0], op->out, total, (int)x->ne[1], op->ip[0],
				 (int)y->ne[1], np);
	cu_op_range(op, 1, (size_t)total, 1, 1);
	return st;
}
static const cu_op_impl slice_impl = { .kind = "slice_channels", .prepare = slice_prepare };

int op_slice_channels(cu_graph *g, int x, int c0, int nc)
{
	int64_t ne[CU_MAXD];
	int y, opi;
	if (begin(g, x))
		return -1;
	if (cu_t(g, x)->ndim < 2 || c0 < 0 || nc < 1 || c0 + nc > cu_t(g, x)->ne[1])
		return bad(g, "slice_channels: bad range for %s", cu_t(g, x));
	memcpy(ne, cu_t(g, x)->ne, sizeof(ne));
	ne[1] = nc;
	y = cu_graph_act(g, cu_t(g, x)->ndim, ne);
	opi = cu_graph_op(g, &slice_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = c0;
	return y;
}

/* ---- nearest ---- */

static clunet_status nearest_prepare(cu_plan *p, cu_op *op)
{
	int planes, ih, iw, oh, ow;
	clunet_status st;
	nhw(cu_t(p->g, op->in[0]), &planes, &ih, &iw);
	nhw(cu_t(p->g, op->out), &planes, &oh, &ow);
	st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "nearest_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiiiiff", op->in[0], op->out, planes, ih, iw, oh, ow,
				 (double)op->fp[0], (double)op->fp[1]);
	cu_op_range(op, 3, (size_t)ow, (size_t)oh, (size_t)planes);
	return st;
}
static const cu_op_impl nearest_impl = { .kind = "upsample_nearest", .prepare = nearest_prepare };

int op_nearest(cu_graph *g, int x, int oh, int ow)
{
	int planes, ih, iw, y, opi;
	int64_t ne[4];
	if (begin(g, x))
		return -1;
	if (!nhw(cu_t(g, x), &planes, &ih, &iw))
		return bad(g, "nearest: input %s is not [N, C, H, W]", cu_t(g, x));
	ne[0] = cu_t(g, x)->ne[0];
	ne[1] = cu_t(g, x)->ne[1];
	ne[2] = oh;
	ne[3] = ow;
	y = cu_graph_act(g, 4, ne);
	opi = cu_graph_op(g, &nearest_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	/* torch: scale = in / out in float32 (for an exact factor of 2, 0.5) */
	g->ops[opi].fp[0] = (float)ih / (float)oh;
	g->ops[opi].fp[1] = (float)iw / (float)ow;
	return y;
}

/* ---- avgpool2 ---- */

static clunet_status avgpool_prepare(cu_plan *p, cu_op *op)
{
	int planes, ih, iw, oh, ow;
	clunet_status st;
	nhw(cu_t(p->g, op->in[0]), &planes, &ih, &iw);
	nhw(cu_t(p->g, op->out), &planes, &oh, &ow);
	st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "avgpool2_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiiii", op->in[0], op->out, planes, ih, iw, oh, ow);
	cu_op_range(op, 3, (size_t)ow, (size_t)oh, (size_t)planes);
	return st;
}
static const cu_op_impl avgpool_impl = { .kind = "avg_pool", .prepare = avgpool_prepare };

int op_avgpool2(cu_graph *g, int x)
{
	int planes, ih, iw, y;
	int64_t ne[4];
	if (begin(g, x))
		return -1;
	if (!nhw(cu_t(g, x), &planes, &ih, &iw))
		return bad(g, "avgpool2: input %s is not [N, C, H, W]", cu_t(g, x));
	ne[0] = cu_t(g, x)->ne[0];
	ne[1] = cu_t(g, x)->ne[1];
	ne[2] = ih / 2;
	ne[3] = iw / 2;
	y = cu_graph_act(g, 4, ne);
	return cu_graph_op(g, &avgpool_impl, &x, 1, y) < 0 ? -1 : y;
}

/* ---- upfirdn2d ---- */

static clunet_status upfirdn_prepare(cu_plan *p, cu_op *op)
{
	int planes, ih, iw, oh, ow;
	clunet_status st;
	nhw(cu_t(p->g, op->in[0]), &planes, &ih, &iw);
	nhw(cu_t(p->g, op->out), &planes, &oh, &ow);
	st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "upfirdn2d_f32");
	if (!st)
		st = cu_set_args(p, op, "tttiiiiiiiii", op->in[0], op->in[1], op->out, planes, ih, iw,
				 oh, ow, op->ip[0], op->ip[1], op->ip[2], op->ip[3]);
	cu_op_range(op, 3, (size_t)ow, (size_t)oh, (size_t)planes);
	return st;
}
static const cu_op_impl upfirdn_impl = { .kind = "upfirdn2d", .prepare = upfirdn_prepare };

int op_upfirdn2d(cu_graph *g, int x, int k, int up, int down, int pad0, int pad1)
{
	int planes, ih, iw, y, opi, taps, in[2] = { x, k };
	int64_t ne[4];
	if (begin(g, x) || begin(g, k))
		return -1;
	if (!nhw(cu_t(g, x), &planes, &ih, &iw))
		return bad(g, "upfirdn2d: input %s is not [N, C, H, W]", cu_t(g, x));
	taps = (int)cu_numel(cu_t(g, k));
	ne[0] = cu_t(g, x)->ne[0];
	ne[1] = cu_t(g, x)->ne[1];
	ne[2] = (ih * up + pad0 + pad1 - taps) / down + 1;
	ne[3] = (iw * up + pad0 + pad1 - taps) / down + 1;
	if (ne[2] <= 0 || ne[3] <= 0)
		return bad(g, "upfirdn2d: input %s too small", cu_t(g, x));
	y = cu_graph_act(g, 4, ne);
	opi = cu_graph_op(g, &upfirdn_impl, in, 2, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = up;
	g->ops[opi].ip[1] = down;
	g->ops[opi].ip[2] = pad0;
	g->ops[opi].ip[3] = taps;
	g->ops[opi].flops = 2.0 * (double)cu_numel(cu_t(g, y)) * taps * taps / (up * up);
	return y;
}

/* ---- embed ---- */

static clunet_status embed_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	int rows = (int)y->ne[0], dim = (int)y->ne[1];
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "embed_f32");
	if (!st)
		st = cu_set_args(p, op, "tttii", op->in[0], op->in[1], op->out, rows, dim);
	cu_op_range(op, 2, (size_t)dim, (size_t)rows, 1);
	return st;
}
static const cu_op_impl embed_impl = { .kind = "embedding", .prepare = embed_prepare };

int op_embed(cu_graph *g, int idx, int table)
{
	int in[2] = { idx, table }, y;
	int64_t ne[2];
	if (begin(g, idx) || begin(g, table))
		return -1;
	if (cu_t(g, idx)->dtype != CU_I32 || cu_t(g, table)->ndim != 2)
		return bad(g, "embed: bad index or table %s", cu_t(g, table));
	ne[0] = cu_numel(cu_t(g, idx));
	ne[1] = cu_t(g, table)->ne[1];
	y = cu_graph_act(g, 2, ne);
	return cu_graph_op(g, &embed_impl, in, 2, y) < 0 ? -1 : y;
}

/* ---- timestep / fourier embeddings ---- */

static clunet_status temb_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	int rows = (int)y->ne[0], dim = (int)y->ne[1];
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "timestep_embed_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiif", op->in[0], op->out, rows, dim, op->ip[0],
				 (double)op->fp[0]);
	cu_op_range(op, 2, (size_t)dim, (size_t)rows, 1);
	return st;
}
static const cu_op_impl temb_impl = { .kind = "timestep_embedding", .prepare = temb_prepare };

int op_timestep_embed(cu_graph *g, int t, int dim, int flip, float shift)
{
	int y, opi;
	int64_t ne[2];
	if (begin(g, t))
		return -1;
	if ((float)(dim / 2) - shift == 0.0f)
		return bad(g, "timestep embedding: half the width equals freq_shift (%s)", cu_t(g, t));
	ne[0] = cu_numel(cu_t(g, t));
	ne[1] = dim;
	y = cu_graph_act(g, 2, ne);
	opi = cu_graph_op(g, &temb_impl, &t, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = flip;
	g->ops[opi].fp[0] = shift;
	return y;
}

static clunet_status fourier_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	int rows = (int)y->ne[0], half = (int)y->ne[1] / 2;
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "fourier_embed_f32");
	if (!st)
		st = cu_set_args(p, op, "tttiiii", op->in[0], op->in[1], op->out, rows, half,
				 op->ip[0], op->ip[1]);
	cu_op_range(op, 2, (size_t)(2 * half), (size_t)rows, 1);
	return st;
}
static const cu_op_impl fourier_impl = { .kind = "fourier_embedding", .prepare = fourier_prepare };

int op_fourier_embed(cu_graph *g, int t, int w, int use_log, int flip)
{
	int in[2] = { t, w }, y, opi;
	int64_t ne[2];
	if (begin(g, t) || begin(g, w))
		return -1;
	ne[0] = cu_numel(cu_t(g, t));
	ne[1] = 2 * cu_numel(cu_t(g, w));
	y = cu_graph_act(g, 2, ne);
	opi = cu_graph_op(g, &fourier_impl, in, 2, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = use_log;
	g->ops[opi].ip[1] = flip;
	return y;
}

/* ---- 1-D resampling (cubic kernels of unet_1d_blocks) ---- */

static clunet_status resample1d_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]), *y = cu_t(p->g, op->out);
	int rows = (int)(x->ne[0] * x->ne[1]), n_in = (int)x->ne[2], n_out = (int)y->ne[2];
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "resample1d_f32");
	if (!st)
		st = cu_set_args(p, op, "tttiiiii", op->in[0], op->in[1], op->out, rows, n_in, n_out,
				 (int)cu_numel(cu_t(p->g, op->in[1])), op->ip[0]);
	cu_op_range(op, 2, (size_t)n_out, (size_t)rows, 1);
	return st;
}
static const cu_op_impl resample1d_impl = { .kind = "resample1d", .prepare = resample1d_prepare };

int op_resample1d(cu_graph *g, int x, int k, int up)
{
	int in[2] = { x, k }, y, opi, taps, n_in, p;
	int64_t ne[3];
	if (begin(g, x) || begin(g, k))
		return -1;
	if (cu_t(g, x)->ndim != 3)
		return bad(g, "resample1d: input %s is not [N, C, L]", cu_t(g, x));
	taps = (int)cu_numel(cu_t(g, k));
	n_in = (int)cu_t(g, x)->ne[2];
	p = taps / 2 - 1;
	/* torch's reflect padding needs a pad shorter than the row */
	if (taps < 2 || (up ? (p + 1) / 2 : p) >= n_in)
		return bad(g, "resample1d: input %s is too short for reflect padding", cu_t(g, x));
	ne[0] = cu_t(g, x)->ne[0];
	ne[1] = cu_t(g, x)->ne[1];
	ne[2] = up ? (int64_t)(n_in + 2 * ((p + 1) / 2) - 1) * 2 - 2 * (2 * p + 1) + taps
		   : (n_in + 2 * p - taps) / 2 + 1;
	y = cu_graph_act(g, 3, ne);
	opi = cu_graph_op(g, &resample1d_impl, in, 2, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = up;
	g->ops[opi].flops = 2.0 * (double)cu_numel(cu_t(g, y)) * taps / (up ? 2 : 1);
	return y;
}

/* ---- repeat along a length ---- */

static clunet_status repeat_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	int rows = (int)(y->ne[0] * y->ne[1]), len = (int)y->ne[2];
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "repeat_len_f32");
	if (!st)
		st = cu_set_args(p, op, "ttii", op->in[0], op->out, rows, len);
	cu_op_range(op, 2, (size_t)len, (size_t)rows, 1);
	return st;
}
static const cu_op_impl repeat_impl = { .kind = "repeat", .prepare = repeat_prepare };

int op_repeat_len(cu_graph *g, int x, int len)
{
	int64_t ne[3];
	int y;
	if (begin(g, x))
		return -1;
	if (cu_t(g, x)->ndim != 2 || len <= 0)
		return bad(g, "repeat_len: input %s is not [N, C]", cu_t(g, x));
	ne[0] = cu_t(g, x)->ne[0];
	ne[1] = cu_t(g, x)->ne[1];
	ne[2] = len;
	y = cu_graph_act(g, 3, ne);
	return cu_graph_op(g, &repeat_impl, &x, 1, y) < 0 ? -1 : y;
}

/* ---- GEGLU ---- */

static clunet_status geglu_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	int n = (int)cu_numel(y), f = (int)y->ne[1], pp = (int)(n / (y->ne[0] * f));
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "geglu_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiii", op->in[0], op->out, n, f, pp);
	cu_op_range(op, 1, (size_t)(n + 7) / 8, 1, 1);
	return st;
}
static const cu_op_impl geglu_impl = { .kind = "geglu", .prepare = geglu_prepare };

int op_geglu(cu_graph *g, int x)
{
	int64_t ne[CU_MAXD];
	int y;
	if (begin(g, x))
		return -1;
	if (cu_t(g, x)->ndim < 2 || cu_t(g, x)->ne[1] % 2)
		return bad(g, "geglu: input %s has no even channel count", cu_t(g, x));
	memcpy(ne, cu_t(g, x)->ne, sizeof(ne));
	ne[1] /= 2;
	y = cu_graph_act(g, cu_t(g, x)->ndim, ne);
	return cu_graph_op(g, &geglu_impl, &x, 1, y) < 0 ? -1 : y;
}

/* ---- mean over the last dimension ---- */

static clunet_status mean_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int len = (int)x->ne[x->ndim - 1], rows = (int)(cu_numel(x) / len);
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "mean_last_f32");
	if (!st)
		st = cu_set_args(p, op, "ttii", op->in[0], op->out, rows, len);
	cu_op_range(op, 1, (size_t)rows, 1, 1);
	return st;
}
static const cu_op_impl mean_impl = { .kind = "mean", .prepare = mean_prepare };

int op_mean_last(cu_graph *g, int x)
{
	int y;
	if (begin(g, x))
		return -1;
	if (cu_t(g, x)->ndim < 2)
		return bad(g, "mean_last: input %s has one dimension", cu_t(g, x));
	y = cu_graph_act(g, cu_t(g, x)->ndim - 1, cu_t(g, x)->ne);
	return cu_graph_op(g, &mean_impl, &x, 1, y) < 0 ? -1 : y;
}

/* ---- concatenation along the last dimension ---- */

static clunet_status concat_last_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *a = cu_t(p->g, op->in[0]), *b = cu_t(p->g, op->in[1]);
	int la = (int)a->ne[a->ndim - 1], lb = (int)b->ne[b->ndim - 1];
	int rows = (int)(cu_numel(a) / la);
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", EWISE_OPTS, "concat_last_f32");
	if (!st)
		st = cu_set_args(p, op, "tttiii", op->in[0], op->in[1], op->out, rows, la, lb);
	cu_op_range(op, 2, (size_t)(la + lb), (size_t)rows, 1);
	return st;
}
static const cu_op_impl concat_last_impl = { .kind = "concat", .prepare = concat_last_prepare };

int op_concat_last(cu_graph *g, int a, int b)
{
	int in[2] = { a, b }, y, nd;
	int64_t ne[CU_MAXD];
	if (begin(g, a) || begin(g, b))
		return -1;
	nd = cu_t(g, a)->ndim;
	if (nd != cu_t(g, b)->ndim || nd < 1)
		return bad(g, "concat_last: ranks differ (%s)", cu_t(g, b));
	for (int i = 0; i < nd - 1; i++)
		if (cu_t(g, a)->ne[i] != cu_t(g, b)->ne[i])
			return bad(g, "concat_last: leading dimensions differ (%s)", cu_t(g, b));
	memcpy(ne, cu_t(g, a)->ne, sizeof(ne));
	ne[nd - 1] += cu_t(g, b)->ne[nd - 1];
	y = cu_graph_act(g, nd, ne);
	return cu_graph_op(g, &concat_last_impl, in, 2, y) < 0 ? -1 : y;
}
