/* Strided-batched GEMM of two activations (the attention scores and their
 * application to the values, the im2col path). Implementations: CLBlast, well
 * tuned on many GPUs and the default on GPU-class devices (its parameters
 * tuned by lib/tune/clblast.c); our own in cl/gemm.cl, the default on
 * CPU-class devices (where untuned CLBlast reaches ~5 % of the FMA peak and
 * compiles for seconds per process): B packed into panels at run time, or
 * the dot-product kernel; a local-memory tiled kernel for GPU-class devices;
 * a reference kernel. CLUNET_GEMM=clblast|own|tiled|ref forces one. */
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

enum { P_TA, P_TB, P_M, P_N, P_K, P_LDA, P_LDB, P_LDC, P_BATCH, P_SA, P_SB, P_SC, P_IMPL };
enum { IMPL_CLBLAST, IMPL_OWN, IMPL_REF, IMPL_TILED };

/* CLUNET_GEMM forces an implementation; else the tuning database's choice
 * (GPU-class devices: clblast or tiled); else CLBlast on GPU-class devices,
 * our SIMD kernels on CPU-class ones. The tiled kernel needs 256-item groups. */
static int choose_impl(cu_plan *p, const cu_op *op)
{
	const char *e = getenv("CLUNET_GEMM"), *v;
	int tiled_ok = p->rt->max_wg >= 256;
	if (e && !strcmp(e, "clblast"))
		return IMPL_CLBLAST;
	if (e && !strcmp(e, "own"))
		return IMPL_OWN;
	if (e && !strcmp(e, "ref"))
		return IMPL_REF;
	if (e && !strcmp(e, "tiled") && tiled_ok)
		return IMPL_TILED;
	v = cu_op_variant(p, op);
	if (strstr(v, "impl=tiled") && tiled_ok)
		return IMPL_TILED;
	if (strstr(v, "impl=clblast"))
		return IMPL_CLBLAST;
	return p->rt->is_cpu ? IMPL_OWN : IMPL_CLBLAST;
}

static clunet_status gemm_prepare(cu_plan *p, cu_op *op)
{
	int *ip = op->ip, ta = ip[P_TA], tb = ip[P_TB], m = ip[P_M], n = ip[P_N];
	/* gemm_dot's register tile for the device's vector registers (32 x 16
	 * floats on AVX-512: 6 x 4; 16 x 8 on AVX2: 3 x 4) */
	const int wide = p->rt->vec_width >= 16, vw = wide ? 16 : 8, mr = wide ? 6 : 3, nr = 4;
	const char *kernel;
	char opts[160];
	clunet_status st;
	ip[P_IMPL] = choose_impl(p, op);
	if (ip[P_IMPL] == IMPL_CLBLAST) {
		op->kernel_name = "CLBlastSgemmStridedBatched";
		/* the Xgemm parameters `clunet tune` found for this device, if any */
		return rt_clblast_apply(p->rt, 0);
	}
	if (ip[P_IMPL] == IMPL_TILED) {
		snprintf(opts, sizeof(opts), "-cl-std=CL1.2 -DVW=16 -DMR=1 -DNB=1 -DNR=1 -DTA=%d "
			 "-DTB=%d -DTILED", ta, tb);
		st = cu_op_kernel(p, op, "gemm.cl", opts, "gemm_tiled");
		if (st)
			return st;
		cu_op_range(op, 3, (size_t)(n + 63) / 64 * 16, (size_t)(m + 63) / 64 * 16,
			    (size_t)ip[P_BATCH]);
		op->use_lws = 1;
		op->lws[0] = op->lws[1] = 16;
		op->lws[2] = 1;
		return cu_set_args(p, op, "ttt" "iiiiiiiii" "f", op->in[0], op->in[1], op->out, m, n,
				   ip[P_K], ip[P_LDA], ip[P_LDB], ip[P_LDC], ip[P_SA], ip[P_SB],
				   ip[P_SC], (double)op->fp[0]);
	}
	/* our own products with TB = 0 (and those whose B is the smaller operand)
	 * were packed when the graph was built (gemm_packed) */
	if (ip[P_IMPL] == IMPL_REF || ta || !tb) {
		kernel = "gemm_ref";
		cu_op_range(op, 3, (size_t)n, (size_t)m, (size_t)ip[P_BATCH]);
	} else {
		kernel = "gemm_dot";
		cu_op_range(op, 3, (size_t)(n + nr - 1) / nr, (size_t)(m + mr - 1) / mr,
			    (size_t)ip[P_BATCH]);
	}
	snprintf(opts, sizeof(opts), "-cl-std=CL1.2 -DVW=%d -DMR=%d -DNB=1 -DNR=%d -DTA=%d -DTB=%d",
		 vw, mr, nr, ta, tb);
	st = cu_op_kernel(p, op, "gemm.cl", opts, kernel);
	if (st)
		return st;
	if (p->rt->is_cpu) {
		op->use_lws = 1;
		op->lws[0] = op->lws[1] = op->lws[2] = 1;
	}
	return cu_set_args(p, op, "ttt" "iiiiiiiii" "f", op->in[0], op->in[1], op->out, m, n,
			   ip[P_K], ip[P_LDA], ip[P_LDB], ip[P_LDC], ip[P_SA], ip[P_SB], ip[P_SC],
			   (double)op->fp[0]);
}

static clunet_status gemm_enqueue(cu_plan *p, cu_op *op, cl_event *ev)
{
	const cu_tensor *a = cu_t(p->g, op->in[0]), *b = cu_t(p->g, op->in[1]),
			*c = cu_t(p->g, op->out);
	const int *ip = op->ip;
	CLBlastStatusCode s;
	if (ip[P_IMPL] != IMPL_CLBLAST)
		return cu_op_launch(p, op, ev);
	s = CLBlastSgemmStridedBatched(
		CLBlastLayoutRowMajor, ip[P_TA] ? CLBlastTransposeYes : CLBlastTransposeNo,
		ip[P_TB] ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)ip[P_M],
		(size_t)ip[P_N], (size_t)ip[P_K], op->fp[0], a->mem, a->off, (size_t)ip[P_LDA],
		(size_t)ip[P_SA], b->mem, b->off, (size_t)ip[P_LDB], (size_t)ip[P_SB], 0.0f, c->mem,
		c->off, (size_t)ip[P_LDC], (size_t)ip[P_SC], (size_t)ip[P_BATCH], &p->rt->queue, ev);
	if (s != CLBlastSuccess) {
		if (s == CLBlastOpenCLOutOfResources || s == CLBlastOpenCLOutOfHostMemory ||
		    s == CLBlastTempBufferAllocFailure)
			return cu_fail(CLUNET_ERR_DEVICE_MEMORY,
				       "CLBlastSgemmStridedBatched(%dx%dx%d, batch %d) failed: out of "
				       "memory (%d)", ip[P_M], ip[P_N], ip[P_K], ip[P_BATCH], (int)s);
		return cu_fail(CLUNET_ERR_OPENCL,
			       "CLBlastSgemmStridedBatched(%dx%dx%d, batch %d) failed: CLBlast status "
			       "%d", ip[P_M], ip[P_N], ip[P_K], ip[P_BATCH], (int)s);
	}
	return CLUNET_OK;
}

/* Tuning on GPU-class devices: CLBlast against our tiled kernel (on CPU-class
 * devices the SIMD kernels have no rival worth a CLBlast compile per shape). */
static int gemm_key(const cu_plan *p, const cu_op *op, char *buf, size_t cap)
{
	const int *ip = op->ip;
	if (p->rt->is_cpu || getenv("CLUNET_GEMM"))
		return 0;
	snprintf(buf, cap, "gemm ta%d tb%d m%d n%d k%d batch%d", ip[P_TA], ip[P_TB], ip[P_M],
		 ip[P_N], ip[P_K], ip[P_BATCH]);
	return 1;
}

static int gemm_variant(const cu_plan *p, const cu_op *op, int i, char *buf, size_t cap)
{
	(void)op;
	if (i != 0 || p->rt->max_wg < 256)
		return 0;
	snprintf(buf, cap, "impl=tiled");
	return 1;
}

static const cu_op_impl gemm_impl = { .kind = "gemm", .prepare = gemm_prepare,
				      .enqueue = gemm_enqueue, .tune_key = gemm_key,
				      .variant = gemm_variant };

int op_gemm_clblast_shape(const cu_plan *p, const cu_op *op, int shape[6])
{
	const char *e = getenv("CLUNET_GEMM");
	if (op->impl != &gemm_impl)
		return 0;
	/* CLBlast is a choice on GPU-class devices (the default there) and when forced */
	if (e ? strcmp(e, "clblast") != 0 : p->rt->is_cpu)
		return 0;
	shape[0] = op->ip[P_TA];
	shape[1] = op->ip[P_TB];
	shape[2] = op->ip[P_M];
	shape[3] = op->ip[P_N];
	shape[4] = op->ip[P_K];
	shape[5] = op->ip[P_BATCH];
	return 1;
}

static int gemm_op(cu_graph *g, int a, int b, const gemm_args *x, int y, int out_ndim,
		   const int64_t *out_ne);

int op_gemm(cu_graph *g, int a, int b, const gemm_args *x, int out_ndim, const int64_t *out_ne)
{
	return gemm_op(g, a, b, x, -1, out_ndim, out_ne);
}

int op_gemm_into(cu_graph *g, int a, int b, const gemm_args *x, int y)
{
	if (!g->status && y < 0)
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	return gemm_op(g, a, b, x, y, 0, NULL);
}

/* ---- the packed-panel path (CPU-class devices): gemm_pack_b + gemm_pk ---- */

enum { K_TA, K_TB, K_M, K_N, K_K, K_LDA, K_LDB, K_LDC, K_SA, K_SB, K_SC, K_VW, K_NB, K_MR,
       K_BATCH, K_BQ };

static void pk_opts(char *buf, size_t cap, const int *ip, int ord)
{
	snprintf(buf, cap, "-cl-std=CL1.2 -DPACKED -DVW=%d -DNB=%d -DMR=%d -DNR=1 -DTA=%d -DTB=%d "
		 "-DORD=%d", ip[K_VW], ip[K_NB], ip[K_MR], ip[K_TA], ip[K_TB], ord);
}

static clunet_status pack_prepare(cu_plan *p, cu_op *op)
{
	const int *ip = op->ip;
	char opts[160];
	clunet_status st;
	pk_opts(opts, sizeof(opts), ip, 0);
	st = cu_op_kernel(p, op, "gemm.cl", opts, "gemm_pack_b");
	if (!st)
		st = cu_set_args(p, op, "tt" "iiii", op->in[0], op->out, ip[K_N], ip[K_K], ip[K_LDB],
				 ip[K_SB]);
	cu_op_range(op, 3, (size_t)ip[K_K],
		    (size_t)(ip[K_N] + ip[K_VW] * ip[K_NB] - 1) / (size_t)(ip[K_VW] * ip[K_NB]),
		    (size_t)ip[K_BQ]);
	op->use_lws = 1;
	op->lws[0] = op->lws[1] = op->lws[2] = 1;
	return st;
}

static clunet_status pk_prepare(cu_plan *p, cu_op *op)
{
	const int *ip = op->ip;
	char opts[160];
	clunet_status st;
	const char *v = cu_op_variant(p, op);
	int ord = cu_variant_int(v, "ord", 0);
	size_t panels = (size_t)(ip[K_N] + ip[K_VW] * ip[K_NB] - 1) / (size_t)(ip[K_VW] * ip[K_NB]);
	size_t blocks = (size_t)(ip[K_M] + ip[K_MR] - 1) / (size_t)ip[K_MR];
	pk_opts(opts, sizeof(opts), ip, ord != 0);
	st = cu_op_kernel(p, op, "gemm.cl", opts, "gemm_pk");
	if (!st)
		st = cu_set_args(p, op, "ttt" "iiiiiiii" "f", op->in[0], op->in[1], op->out, ip[K_M],
				 ip[K_N], ip[K_K], ip[K_LDA], ip[K_LDC], ip[K_SA], ip[K_SB], ip[K_SC],
				 (double)op->fp[0]);
	if (ord)
		cu_op_range(op, 3, blocks, panels, (size_t)ip[K_BATCH]);
	else
		cu_op_range(op, 3, panels, blocks, (size_t)ip[K_BATCH]);
	op->use_lws = 1;
	op->lws[0] = op->lws[1] = op->lws[2] = 1;
	return st;
}

static const cu_op_impl pack_impl = { .kind = "gemm_pack", .prepare = pack_prepare };
static int pk_key(const cu_plan *p, const cu_op *op, char *buf, size_t cap)
{
	const int *ip = op->ip;
	(void)p;
	snprintf(buf, cap, "gemm_pk ta%d tb%d m%d n%d k%d batch%d", ip[K_TA], ip[K_TB], ip[K_M],
		 ip[K_N], ip[K_K], ip[K_BATCH]);
	return 1;
}

/* the other NDRange order (row blocks fastest) */
static int pk_variant(const cu_plan *p, const cu_op *op, int i, char *buf, size_t cap)
{
	(void)p;
	(void)op;
	if (i != 0)
		return 0;
	snprintf(buf, cap, "ord=1");
	return 1;
}

static const cu_op_impl pk_impl = { .kind = "gemm", .prepare = pk_prepare, .tune_key = pk_key,
				    .variant = pk_variant };

/* Our own kernels (CPU-class devices, or CLUNET_GEMM=own) pack B into
 * panels, unless B is the larger operand of a transposed product (the
 * attention's P V^T: packing P would copy the score matrix; the dot-product
 * kernel reads it in place). */
static int use_packed(const cu_graph *g, const gemm_args *x)
{
	const char *e = getenv("CLUNET_GEMM");
	return (e ? !strcmp(e, "own") : g->rt->is_cpu) && (!x->trans_b || x->n <= x->m ||
							   x->trans_a);
}

/* The register tile of gemm_pk: MR rows x NB vectors of VW columns. AVX2
 * class (16 registers): 6 x 2 float8 (6 x 1 for 8 columns or fewer).
 * AVX-512 class (32 registers): 6 x 4 float16, or, where fewer columns are
 * computed past n, 8 x 3 or 4 x 5 (the same 20-24 accumulators): 40 columns
 * (the attention's P V at d 40) as 48 rather than 64, 77 (its scores over
 * 77 tokens) as 80 rather than 128. */
static int pk_cols(int n, int w) /* the columns computed in panels of w */
{
	return (n + w - 1) / w * w;
}

static void pk_tile(int wide, int n, int *nb, int *mr)
{
	*mr = 6;
	if (!wide)
		*nb = n > 8 ? 2 : 1;
	else if (n <= 32)
		*nb = n > 16 ? 2 : 1;
	else if (pk_cols(n, 48) < pk_cols(n, 64) && pk_cols(n, 48) <= pk_cols(n, 80))
		*nb = 3, *mr = 8;
	else if (pk_cols(n, 80) < pk_cols(n, 64))
		*nb = 5, *mr = 4;
	else
		*nb = 4;
}

static int gemm_packed(cu_graph *g, int a, int b, const gemm_args *x, int y)
{
	const int wide = g->rt->vec_width >= 16, vw = wide ? 16 : 8;
	int nb, mr;
	pk_tile(wide, x->n, &nb, &mr);
	const int bq = x->stride_b ? x->batch : 1, np = (x->n + vw * nb - 1) / (vw * nb);
	int in[2], bp, opi;
	int ip[K_BQ + 1] = { x->trans_a, x->trans_b, x->m, x->n, x->k, x->lda, x->ldb, x->ldc,
			     (int)x->stride_a, (int)x->stride_b, (int)x->stride_c, vw, nb, mr,
			     x->batch, bq };
	bp = cu_graph_act(g, 4, (int64_t[]){ bq, np, x->k, vw * nb });
	if (bp < 0)
		return -1;
	opi = cu_graph_op(g, &pack_impl, &b, 1, bp);
	if (opi < 0)
		return -1;
	memcpy(g->ops[opi].ip, ip, sizeof(ip));
	in[0] = a;
	in[1] = bp;
	/* the packed B of batch item q: q * np * k * nbw floats in, or all share one */
	ip[K_SB] = bq > 1 ? np * x->k * vw * nb : 0;
	opi = cu_graph_op(g, &pk_impl, in, 2, y);
	if (opi < 0)
		return -1;
	memcpy(g->ops[opi].ip, ip, sizeof(ip));
	g->ops[opi].fp[0] = x->alpha;
	g->ops[opi].flops = 2.0 * x->m * (double)x->n * x->k * x->batch;
	return y;
}

static int gemm_op(cu_graph *g, int a, int b, const gemm_args *x, int y, int out_ndim,
		   const int64_t *out_ne)
{
	int in[2] = { a, b }, opi;
	long need_a, need_b;
	if (g->status || a < 0 || b < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	/* every element any batch touches must be inside the operands */
	need_a = (long)(x->batch - 1) * x->stride_a +
		 (long)(x->trans_a ? x->k - 1 : x->m - 1) * x->lda + (x->trans_a ? x->m : x->k);
	need_b = (long)(x->batch - 1) * x->stride_b +
		 (long)(x->trans_b ? x->n - 1 : x->k - 1) * x->ldb + (x->trans_b ? x->k : x->n);
	if (need_a > cu_numel(cu_t(g, a)) || need_b > cu_numel(cu_t(g, b))) {
		cu_fail(CLUNET_ERR_ARGUMENT, "gemm: operands too small for %dx%dx%d, batch %d", x->m,
			x->n, x->k, x->batch);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (y < 0)
		y = cu_graph_act(g, out_ndim, out_ne);
	if (y < 0)
		return -1;
	if (cu_numel(cu_t(g, y)) < (long)(x->batch - 1) * x->stride_c + (long)(x->m - 1) * x->ldc + x->n) {
		cu_fail(CLUNET_ERR_ARGUMENT, "gemm: output too small");
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (use_packed(g, x))
		return gemm_packed(g, a, b, x, y);
	opi = cu_graph_op(g, &gemm_impl, in, 2, y);
	if (opi < 0)
		return -1;
	{
		int *ip = g->ops[opi].ip;
		ip[P_TA] = x->trans_a;
		ip[P_TB] = x->trans_b;
		ip[P_M] = x->m;
		ip[P_N] = x->n;
		ip[P_K] = x->k;
		ip[P_LDA] = x->lda;
		ip[P_LDB] = x->ldb;
		ip[P_LDC] = x->ldc;
		ip[P_BATCH] = x->batch;
		ip[P_SA] = (int)x->stride_a;
		ip[P_SB] = (int)x->stride_b;
		ip[P_SC] = (int)x->stride_c;
		g->ops[opi].fp[0] = x->alpha;
		g->ops[opi].flops = 2.0 * x->m * (double)x->n * x->k * x->batch;
	}
	return y;
}
