/* GroupNorm and softmax (cl/norm.cl). */
#include <stdio.h>

#include "ops.h"

static clunet_status gn_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int n = (int)x->ne[0], c = (int)x->ne[1], groups = op->ip[0];
	int hw = (int)(cu_numel(x) / ((int64_t)n * c));
	/* CPU: one work-item per group, no barriers; GPU: a power-of-two group
	 * of work-items, no larger than the device and this kernel allow */
	size_t ls = p->rt->is_cpu ? 1 : 64, kmax = 0;
	char opts[160];
	clunet_status st;
	while (ls > p->rt->max_wg)
		ls /= 2;
	for (;;) {
		snprintf(opts, sizeof(opts),
			 "-cl-std=CL1.2 -DLS=%zu -DACT=%d -DAFFINE=%d -DSS=%d -DPOST=%d -DRES=%d", ls,
			 op->ip[1], op->in[1] >= 0, op->in[3] >= 0, op->in[4] >= 0, op->in[5] >= 0);
		st = cu_op_kernel(p, op, "norm.cl", opts, "group_norm_f32");
		if (st)
			return st;
		if (clGetKernelWorkGroupInfo(op->kernel, p->rt->device, CL_KERNEL_WORK_GROUP_SIZE,
					     sizeof(kmax), &kmax, NULL) != CL_SUCCESS || kmax >= ls ||
		    ls == 1)
			break;
		clReleaseKernel(op->kernel);
		op->kernel = NULL;
		while (ls > kmax && ls > 1)
			ls /= 2;
	}
	st = cu_set_args(p, op, "tttttttiiif", op->in[0], op->in[1], op->in[2], op->in[3], op->in[4],
			 op->in[5], op->out, c, hw, groups, (double)op->fp[0]);
	if (st)
		return st;
	cu_op_range(op, 1, (size_t)n * (size_t)groups * ls, 1, 1);
	op->use_lws = 1;
	op->lws[0] = ls;
	op->lws[1] = op->lws[2] = 1;
	return CLUNET_OK;
}

static const cu_op_impl gn_impl = { .kind = "group_norm", .prepare = gn_prepare };

/* ---- the split form: stats per slice, then combine and apply ---- */

static void gn_options(char *opts, size_t cap, const cu_op *op, int in_affine)
{
	snprintf(opts, cap, "-cl-std=CL1.2 -DLS=1 -DACT=%d -DAFFINE=%d -DSS=%d -DPOST=%d -DRES=%d",
		 op->ip[1], in_affine, op->in[3] >= 0, op->in[4] >= 0, op->in[5] >= 0);
}

static clunet_status gn_stats_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int n = (int)x->ne[0], c = (int)x->ne[1], groups = op->ip[0], chunks = op->ip[2];
	int hw = (int)(cu_numel(x) / ((int64_t)n * c));
	clunet_status st = cu_op_kernel(p, op, "norm.cl",
					"-cl-std=CL1.2 -DLS=1 -DACT=0 -DAFFINE=0 -DSS=0 -DPOST=0 -DRES=0",
					"group_norm_stats_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiii", op->in[0], op->out, c, hw, groups, chunks);
	cu_op_range(op, 2, (size_t)chunks, (size_t)n * groups, 1);
	return st;
}
static const cu_op_impl gn_stats_impl = { .kind = "group_norm", .prepare = gn_stats_prepare };

/* inputs: x, gamma, beta, ss, post, res, stats */
static clunet_status gn_apply_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int n = (int)x->ne[0], c = (int)x->ne[1], groups = op->ip[0], chunks = op->ip[2];
	int hw = (int)(cu_numel(x) / ((int64_t)n * c));
	char opts[160];
	clunet_status st;
	gn_options(opts, sizeof(opts), op, op->in[1] >= 0);
	st = cu_op_kernel(p, op, "norm.cl", opts, "group_norm_apply_f32");
	if (!st)
		st = cu_set_args(p, op, "ttttttttiiiif", op->in[0], op->in[6], op->in[1], op->in[2],
				 op->in[3], op->in[4], op->in[5], op->out, c, hw, groups, chunks,
				 (double)op->fp[0]);
	cu_op_range(op, 2, (size_t)chunks, (size_t)n * groups, 1);
	return st;
}
static const cu_op_impl gn_apply_impl = { .kind = "group_norm", .prepare = gn_apply_prepare };

/* Slices per group: on CPU-class devices, when the groups alone leave cores
 * idle and a group is long enough to be worth splitting. */
static int gn_chunks(const cu_graph *g, int64_t n_groups, int64_t span)
{
	int64_t want = 4LL * (g->rt->info.compute_units ? g->rt->info.compute_units : 1);
	if (!g->rt->is_cpu || n_groups >= want || span < 65536)
		return 1;
	want = (want + n_groups - 1) / n_groups * 4; /* a few slices per core */
	return (int)(want > 64 ? 64 : want);
}

int op_group_norm(cu_graph *g, int x, int gamma, int beta, int groups, float eps, int ss,
		  cu_act act)
{
	return op_group_norm_ex(g, x, gamma, beta, groups, eps, ss, act, -1, -1);
}

int op_group_norm_ex(cu_graph *g, int x, int gamma, int beta, int groups, float eps, int ss,
		     cu_act act, int post, int res)
{
	const cu_tensor *xt;
	int y, opi, in[7], chunks;
	char s[96], s2[96];
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	xt = cu_t(g, x);
	if (xt->ndim < 2 || groups <= 0 || xt->ne[1] % groups != 0) {
		cu_fail(CLUNET_ERR_ARGUMENT, "group_norm: %d groups do not divide the channels of %s",
			groups, cu_shape_str(xt, s, sizeof(s)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (ss >= 0 && cu_numel(cu_t(g, ss)) != 2 * xt->ne[0] * xt->ne[1]) {
		cu_fail(CLUNET_ERR_ARGUMENT, "group_norm: scale-shift %s is not [N, 2C]",
			cu_shape_str(cu_t(g, ss), s, sizeof(s)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (post >= 0 && cu_numel(cu_t(g, post)) != xt->ne[0] * xt->ne[1]) {
		cu_fail(CLUNET_ERR_ARGUMENT, "group_norm: per-sample bias %s is not [N, C]",
			cu_shape_str(cu_t(g, post), s, sizeof(s)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (res >= 0 && cu_numel(cu_t(g, res)) != cu_numel(xt)) {
		cu_fail(CLUNET_ERR_ARGUMENT, "group_norm: residual %s does not match %s",
			cu_shape_str(cu_t(g, res), s, sizeof(s)), cu_shape_str(xt, s2, sizeof(s2)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	chunks = gn_chunks(g, xt->ne[0] * groups, cu_numel(xt) / (xt->ne[0] * groups));
	y = cu_graph_act(g, xt->ndim, xt->ne);
	in[0] = x;
	in[1] = gamma;
	in[2] = beta;
	in[3] = ss;
	in[4] = post;
	in[5] = res;
	if (chunks > 1) {
		int64_t sne = (int64_t)cu_t(g, x)->ne[0] * groups * chunks * 2;
		int stats = cu_graph_act(g, 1, &sne), so;
		so = cu_graph_op(g, &gn_stats_impl, &x, 1, stats);
		if (so < 0)
			return -1;
		g->ops[so].ip[0] = groups;
		g->ops[so].ip[2] = chunks;
		in[6] = stats;
		opi = cu_graph_op(g, &gn_apply_impl, in, 7, y);
	} else {
		opi = cu_graph_op(g, &gn_impl, in, 6, y);
	}
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = groups;
	g->ops[opi].ip[1] = act;
	g->ops[opi].ip[2] = chunks;
	g->ops[opi].fp[0] = eps;
	return y;
}

static clunet_status softmax_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int cols = (int)x->ne[x->ndim - 1], rows = (int)(cu_numel(x) / cols);
	clunet_status st = cu_op_kernel(p, op, "norm.cl",
					"-cl-std=CL1.2 -DLS=1 -DACT=0 -DAFFINE=0 -DSS=0 -DPOST=0 -DRES=0",
					"softmax_rows_f32");
	if (st)
		return st;
	st = cu_set_args(p, op, "ttiif", op->in[0], op->out, rows, cols, (double)op->fp[0]);
	if (st)
		return st;
	cu_op_range(op, 1, (size_t)rows, 1, 1);
	return CLUNET_OK;
}

static const cu_op_impl softmax_impl = { .kind = "softmax", .prepare = softmax_prepare };

int op_softmax(cu_graph *g, int x, float scale)
{
	int y, opi;
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	y = cu_graph_act(g, cu_t(g, x)->ndim, cu_t(g, x)->ne);
	opi = cu_graph_op(g, &softmax_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].fp[0] = scale;
	g->ops[opi].flops = 3.0 * (double)cu_numel(cu_t(g, x));
	return y;
}

/* ---- LayerNorm over channels (channel-major) ---- */

static clunet_status ln_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int n = (int)x->ne[0], c = (int)x->ne[1], pp = (int)(cu_numel(x) / ((int64_t)n * c));
	clunet_status st = cu_op_kernel(p, op, "norm.cl",
					"-cl-std=CL1.2 -DLS=1 -DACT=0 -DAFFINE=1 -DSS=0 -DPOST=0 -DRES=0",
					"layer_norm_cm_f32");
	if (!st)
		st = cu_set_args(p, op, "ttttiif", op->in[0], op->in[1], op->in[2], op->out, c, pp,
				 (double)op->fp[0]);
	cu_op_range(op, 2, (size_t)(pp + 15) / 16, (size_t)n, 1);
	return st;
}
static const cu_op_impl ln_impl = { .kind = "layer_norm", .prepare = ln_prepare };

int op_layer_norm(cu_graph *g, int x, int gamma, int beta, float eps)
{
	int in[3] = { x, gamma, beta }, y, opi;
	if (g->status || x < 0 || gamma < 0 || beta < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	if (cu_t(g, x)->ndim < 2 || cu_numel(cu_t(g, gamma)) != cu_t(g, x)->ne[1]) {
		char s[96];
		cu_fail(CLUNET_ERR_ARGUMENT, "layer_norm: weights do not match the channels of %s",
			cu_shape_str(cu_t(g, x), s, sizeof(s)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	y = cu_graph_act(g, cu_t(g, x)->ndim, cu_t(g, x)->ne);
	opi = cu_graph_op(g, &ln_impl, in, 3, y);
	if (opi < 0)
		return -1;
	g->ops[opi].fp[0] = eps;
	return y;
}

/* ---- softmax with a per-key bias ---- */

static clunet_status softmax_bias_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]);
	int cols = (int)x->ne[x->ndim - 1], rows = (int)(cu_numel(x) / cols);
	clunet_status st = cu_op_kernel(p, op, "norm.cl",
					"-cl-std=CL1.2 -DLS=1 -DACT=0 -DAFFINE=0 -DSS=0 -DPOST=0 -DRES=0",
					"softmax_bias_rows_f32");
	if (!st)
		st = cu_set_args(p, op, "tttiii", op->in[0], op->in[1], op->out, rows, cols, op->ip[0]);
	cu_op_range(op, 1, (size_t)rows, 1, 1);
	return st;
}
static const cu_op_impl softmax_bias_impl = { .kind = "softmax", .prepare = softmax_bias_prepare };

int op_softmax_bias(cu_graph *g, int x, int bias, int rows_per_item)
{
	int in[2] = { x, bias }, y, opi;
	const cu_tensor *t;
	int64_t cols, rows;
	if (g->status || x < 0 || bias < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	t = cu_t(g, x);
	cols = t->ne[t->ndim - 1];
	rows = cu_numel(t) / cols;
	if (rows_per_item <= 0 || rows % rows_per_item ||
	    cu_numel(cu_t(g, bias)) != rows / rows_per_item * cols) {
		cu_fail(CLUNET_ERR_ARGUMENT, "softmax: the bias is not one row of %lld keys per item",
			(long long)cols);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	y = cu_graph_act(g, t->ndim, t->ne);
	opi = cu_graph_op(g, &softmax_bias_impl, in, 2, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = rows_per_item;
	g->ops[opi].flops = 3.0 * (double)rows * cols;
	return y;
}
