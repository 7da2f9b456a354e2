/* Fused attention (cl/attention.cl): softmax(scale q k^T) v per batch-head,
 * with the running-max softmax, so no [Lq, Lk] score matrix is ever stored.
 * The keys and values are turned token-major first (two transposes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static clunet_status transpose_prepare(cu_plan *p, cu_op *op)
{
	int batch = op->ip[0], rows = op->ip[1], cols = op->ip[2];
	clunet_status st = cu_op_kernel(p, op, "attention.cl",
					"-cl-std=CL1.2 -DD=1 -DQB=1 -DKB=1 -DMASK=0", "transpose_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiii", op->in[0], op->out, batch, rows, cols);
	cu_op_range(op, 3, (size_t)cols, (size_t)rows, (size_t)batch);
	return st;
}
static const cu_op_impl transpose_impl = { .kind = "transpose", .prepare = transpose_prepare };

int op_transpose(cu_graph *g, int x, int batch, int rows, int cols)
{
	int64_t ne[3] = { batch, cols, rows };
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	return op_transpose_into(g, x, batch, rows, cols, cu_graph_act(g, 3, ne));
}

int op_transpose_into(cu_graph *g, int x, int batch, int rows, int cols, int y)
{
	int opi;
	if (g->status || x < 0 || y < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	if (cu_numel(cu_t(g, x)) != (int64_t)batch * rows * cols ||
	    cu_numel(cu_t(g, y)) != (int64_t)batch * rows * cols) {
		cu_fail(CLUNET_ERR_ARGUMENT, "transpose: %d x %d x %d does not match the input and "
			"output", batch, rows, cols);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	opi = cu_graph_op(g, &transpose_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = batch;
	g->ops[opi].ip[1] = rows;
	g->ops[opi].ip[2] = cols;
	return y;
}

enum { P_BH, P_D, P_LQ, P_LK, P_QB, P_VE, P_HEADS, P_YP };

/* The vector width along the head dimension for the SIMD kernel, 0 if none fits. */
static int head_vector_width(int d)
{
	return d % 16 == 0 ? 16 : d % 8 == 0 ? 8 : d % 4 == 0 ? 4 : 0;
}

/* Query vectors per work-item of the query-lane kernels by default: 2 for
 * the blocked kernel on AVX-512-class devices where LQ holds two vectors of QW
 * queries (each broadcast key and value entry serves both, the loads per FMA
 * halve: SD 1.5's self-attention at 64x64 86 -> 68 ms, 62 % of the FMA peak
 * against 50 %; 3 or 4 were no faster), else 1 (on AVX2, 16 registers, two
 * vectors of the per-few-keys kernel were 1.5x slower; the tuner tries 2). */
static int attention_qv_default(const rt_ctx *rt, const char *variant, int lq, int qw)
{
	return rt->vec_width >= 16 && cu_variant_int(variant, "blk", 1) && lq >= 2 * qw ? 2 : 1;
}

/* Keys a block of the blocked kernel: 32, or 16 where that computes fewer
 * past the end (77 tokens: 80 keys against 96; SD 1.5's cross-attention at
 * 64x64 2.0 -> 1.7 ms on an AVX-512 EPYC). */
static int attention_kb_default(int lk)
{
	return (lk + 15) / 16 * 16 < (lk + 31) / 32 * 32 ? 16 : 32;
}

static clunet_status fused_prepare(cu_plan *p, cu_op *op)
{
	int *ip = op->ip;
	char opts[160];
	clunet_status st;
	if (ip[P_VE] < 0) {
		/* 8 keys a block by default: 15 % faster than 16 at d 40 */
		const char *v = cu_op_variant(p, op);
		int kb = cu_variant_int(v, "kb", 8), qv;
		/* queries per vector: 16 (one AVX-512 register; on AVX2 two, which measured
		 * faster than one float8 there too: fewer exps and loop trips per query);
		 * the tuner also tries 8 */
		int qw = cu_variant_int(v, "qw", 16);
		if (kb != 4 && kb != 16)
			kb = 8;
		if (qw != 8)
			qw = 16;
		qv = cu_variant_int(v, "qv", attention_qv_default(p->rt, v, ip[P_LQ], qw));
		int blocks = cu_variant_int(v, "blk", 1);
		/* the blocked kernel takes up to 4 query vectors, the other 2 */
		if (qv < 1 || qv > (blocks ? 4 : 2) || ip[P_LQ] < qv * qw)
			qv = 1;
		ip[P_QB] = qv * qw; /* queries per work-item: the range below */
		if (blocks) {
			/* the blocked kernel: register chunks for the vector registers (16 on
			 * AVX2: 4 accumulators of two-register float16, or 8 float8) */
			int small = p->rt->vec_width < 16 && qw == 16;
			int kbb = cu_variant_int(v, "kb", attention_kb_default(ip[P_LK]));
			int ck = cu_variant_int(v, "ck", small ? 4 : 8), ce = cu_variant_int(v, "ce", small ? 4 : 8);
			if (kbb < 8 || kbb > 128)
				kbb = attention_kb_default(ip[P_LK]);
			if (ck < 1 || ck > 16 || kbb % ck)
				ck = 4;
			if (ce < 1 || ce > 16)
				ce = 4;
			snprintf(opts, sizeof(opts),
				 "-cl-std=CL1.2 -DD=%d -DQB=1 -DKB=%d -DCK=%d -DCE=%d -DQW=%d -DQV=%d "
				 "-DQBLOCKS -DMASK=%d", ip[P_D], kbb, ck, ce, qw, qv, op->in[3] >= 0);
			st = cu_op_kernel(p, op, "attention.cl", opts, "attention_fused_qb_f32");
		} else {
			snprintf(opts, sizeof(opts),
				 "-cl-std=CL1.2 -DD=%d -DQB=1 -DKB=%d -DQV=%d -DQW=%d -DQLANES -DMASK=%d",
				 ip[P_D], kb, qv, qw, op->in[3] >= 0);
			st = cu_op_kernel(p, op, "attention.cl", opts, "attention_fused_q_f32");
		}
	} else if (ip[P_VE]) {
		snprintf(opts, sizeof(opts), "-cl-std=CL1.2 -DD=%d -DQB=%d -DKB=16 -DVE=%d -DMASK=%d",
			 ip[P_D], ip[P_QB], ip[P_VE], op->in[3] >= 0);
		st = cu_op_kernel(p, op, "attention.cl", opts, "attention_fused_v_f32");
	} else {
		snprintf(opts, sizeof(opts), "-cl-std=CL1.2 -DD=%d -DQB=%d -DKB=16 -DMASK=%d", ip[P_D],
			 ip[P_QB], op->in[3] >= 0);
		st = cu_op_kernel(p, op, "attention.cl", opts, "attention_fused_f32");
	}
	if (!st)
		st = cu_set_args(p, op, "tttttiiiif", op->in[0], op->in[1], op->in[2], op->in[3],
				 op->out, ip[P_LQ], ip[P_YP], ip[P_LK], ip[P_HEADS], (double)op->fp[0]);
	cu_op_range(op, 2, (size_t)(ip[P_LQ] + ip[P_QB] - 1) / (size_t)ip[P_QB], (size_t)ip[P_BH], 1);
	if (p->rt->is_cpu) {
		op->use_lws = 1;
		op->lws[0] = op->lws[1] = op->lws[2] = 1;
	}
	return st;
}
static int fused_key(const cu_plan *p, const cu_op *op, char *buf, size_t cap)
{
	const int *ip = op->ip;
	(void)p;
	if (ip[P_VE] >= 0) /* only the query-lane kernel has variants */
		return 0;
	snprintf(buf, cap, "attention_q bh%d d%d lq%d lk%d mask%d", ip[P_BH], ip[P_D], ip[P_LQ],
		 ip[P_LK], op->in[3] >= 0);
	return 1;
}

/* The blocked kernel with other key blocks (16, 64), two query vectors per
 * work-item and 8-query vectors,
 * and the per-few-keys kernel (blk=0) with key blocks of 4, 8, 16, one or
 * two query vectors, 8 or 16 queries per vector; the default (blocked, 32
 * keys or attention_kb_default, 16 queries, attention_qv_default vectors) is
 * not listed. */
static int fused_variant(const cu_plan *p, const cu_op *op, int i, char *buf, size_t cap)
{
	static const int kbs[] = { 4, 8, 16 }, bkbs[] = { 16, 32, 64 };
	const int dqv = attention_qv_default(p->rt, "", op->ip[P_LQ], 16);
	const int dkb = attention_kb_default(op->ip[P_LK]);
	int n = 0;
	for (int w = 0; w < 2; w++)
		for (int qv = 1; qv <= 2; qv++)
			for (int k = 0; k < 3; k++) {
				int qw = w ? 8 : 16;
				if ((qw == 16 && qv == dqv && bkbs[k] == dkb) || op->ip[P_LQ] < qv * qw)
					continue;
				if (n++ == i) {
					snprintf(buf, cap, "blk=1,kb=%d,qv=%d,qw=%d", bkbs[k], qv, qw);
					return 1;
				}
			}
	for (int w = 0; w < 2; w++)
		for (int qv = 1; qv <= 2; qv++)
			for (int k = 0; k < 3; k++) {
				int qw = w ? 8 : 16;
				if (op->ip[P_LQ] < qv * qw)
					continue;
				if (n++ == i) {
					snprintf(buf, cap, "blk=0,kb=%d,qv=%d,qw=%d", kbs[k], qv, qw);
					return 1;
				}
			}
	return 0;
}

static const cu_op_impl fused_impl = { .kind = "attention_fused", .prepare = fused_prepare,
	.tune_key = fused_key, .variant = fused_variant };

int op_attention_fused(cu_graph *g, int q, int k, int v, int mask, int heads, int bh, int d, int lq,
		       int lk, float scale, int out_ndim, const int64_t *out_ne)
{
	int y;
	if (g->status)
		return cu_graph_fail(g, g->status);
	y = cu_graph_act(g, out_ndim, out_ne);
	if (y >= 0 && cu_numel(cu_t(g, y)) != (int64_t)bh * d * lq) {
		cu_fail(CLUNET_ERR_ARGUMENT, "attention: output shape does not hold the result");
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	return op_attention_fused_into(g, q, k, v, mask, heads, bh, d, lq, lk, scale, y, lq);
}

int op_attention_fused_into(cu_graph *g, int q, int k, int v, int mask, int heads, int bh, int d,
			    int lq, int lk, float scale, int y, int yp)
{
	int in[4], opi, ve;
	if (g->status || q < 0 || k < 0 || v < 0 || y < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	if (yp < lq || cu_numel(cu_t(g, q)) != (int64_t)bh * d * lq ||
	    cu_numel(cu_t(g, y)) != (int64_t)bh * d * yp) {
		cu_fail(CLUNET_ERR_ARGUMENT, "attention: q and the output do not hold %d heads of %d "
			"rows of %d queries (the output's %d apart)", bh, d, lq, yp);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (cu_numel(cu_t(g, k)) != (int64_t)bh * d * lk ||
	    cu_numel(cu_t(g, v)) != (int64_t)bh * d * lk) {
		cu_fail(CLUNET_ERR_ARGUMENT, "attention: k and v do not hold %d heads of %d x %d", bh, d,
			lk);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	/* the values token-major; the keys too unless the key-vector SIMD kernel
	 * reads them channel-major. CPU-class devices: the query-lane kernel
	 * (ve = -1) when there are 16 queries, else the key-vector one.
	 * CLUNET_ATTENTION_KERNEL=keys forces the latter. */
	ve = g->rt->is_cpu ? head_vector_width(d) : 0;
	if (g->rt->is_cpu && lq >= 16) {
		const char *e = getenv("CLUNET_ATTENTION_KERNEL");
		if (!e || strcmp(e, "keys"))
			ve = -1;
	}
	in[0] = q;
	in[1] = ve > 0 ? k : op_transpose(g, k, bh, d, lk);
	in[2] = op_transpose(g, v, bh, d, lk);
	in[3] = mask;
	if (mask >= 0 && cu_numel(cu_t(g, mask)) != (int64_t)(bh / heads) * lk) {
		cu_fail(CLUNET_ERR_ARGUMENT, "attention: the mask does not hold %d keys per batch item", lk);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	opi = cu_graph_op(g, &fused_impl, in, 4, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[P_BH] = bh;
	g->ops[opi].ip[P_D] = d;
	g->ops[opi].ip[P_LQ] = lq;
	g->ops[opi].ip[P_LK] = lk;
	g->ops[opi].ip[P_VE] = ve;
	g->ops[opi].ip[P_HEADS] = heads;
	g->ops[opi].ip[P_YP] = yp;
	/* queries per work-item: enough to share each load, few enough for registers */
	g->ops[opi].ip[P_QB] = ve ? (d <= 32 ? 8 : d <= 64 ? 4 : 2) : (d <= 64 ? 4 : d <= 128 ? 2 : 1);
	g->ops[opi].fp[0] = scale;
	g->ops[opi].flops = 4.0 * bh * (double)d * lq * lk;
	return y;
}
