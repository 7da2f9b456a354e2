/* Op micro-benchmark: the convolutions and GEMMs of the UNets at their real
 * shapes (SD 1.5 at 64x64 latents by default), each timed with OpenCL events
 * over several runs and printed as GFLOP/s and as a percentage of the FMA
 * peak measured right before that case (the machine's speed moves).
 *
 *   bench_ops [--runs N] [--filter SUBSTRING] [--unpacked]
 *
 * --unpacked gives the convolutions their weights in the checkpoint's
 * layout, as a CPU-class device reads them from the mapped file.
 *
 * Forcing variables (CLUNET_CONV, CLUNET_GEMM, ...) apply as in a model, so
 * one implementation can be compared with another. Not a test: no case can
 * fail, it only measures. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "core/graph.h"
#include "ops/ops.h"
#include "runtime/runtime.h"

typedef struct conv_shape {
	const char *name;
	int n, ic, oc, h, w, k, s;
} conv_shape;

typedef struct gemm_shape {
	const char *name;
	int ta, tb, m, n, k, batch;
} gemm_shape;

static const conv_shape convs[] = {
	{ "3x3 320->320 64x64 (SD1.5 level 1)", 1, 320, 320, 64, 64, 3, 1 },
	{ "3x3 640->640 32x32 (level 2)", 1, 640, 640, 32, 32, 3, 1 },
	{ "3x3 1280->1280 16x16 (level 3)", 1, 1280, 1280, 16, 16, 3, 1 },
	{ "3x3 1280->1280 8x8 (level 4)", 1, 1280, 1280, 8, 8, 3, 1 },
	{ "3x3 640->320 64x64 (up, conv1)", 1, 640, 320, 64, 64, 3, 1 },
	{ "3x3 s2 320->320 64x64 (downsample)", 1, 320, 320, 64, 64, 3, 2 },
	{ "1x1 320->320 4096 px (proj_in, to_q)", 1, 320, 320, 1, 4096, 1, 1 },
	{ "1x1 320->2560 4096 px (GEGLU proj)", 1, 320, 2560, 1, 4096, 1, 1 },
	{ "1x1 1280->320 4096 px (FF out)", 1, 1280, 320, 1, 4096, 1, 1 },
	{ "1x1 640->640 1024 px (level 2 linear)", 1, 640, 640, 1, 1024, 1, 1 },
	{ "1x1 1280->1280 256 px (level 3 linear)", 1, 1280, 1280, 1, 256, 1, 1 },
	{ "1x1 768->320 77 tokens (to_k)", 1, 768, 320, 1, 77, 1, 1 },
};

/* the attention products as the plain attention path calls them on
 * CPU-class devices (attention_plain in lib/nn/blocks.c: q transposed to
 * token-major, the output token-major), then in the forms it uses elsewhere
 * (channel-major q, k, v as they are) */
static const gemm_shape gemms[] = {
	{ "scores 4096x4096x40, 8 heads (qt k)", 0, 0, 4096, 4096, 40, 8 },
	{ "apply 4096x40x4096, 8 heads (p v^T)", 0, 1, 4096, 40, 4096, 8 },
	{ "cross scores 4096x77x40, 8 heads (qt k)", 0, 0, 4096, 77, 40, 8 },
	{ "cross apply 4096x40x77, 8 heads (p v^T)", 0, 1, 4096, 40, 77, 8 },
	{ "scores 1024x1024x80, 8 heads (qt k)", 0, 0, 1024, 1024, 80, 8 },
	{ "GPU form: scores 4096x4096x40 (q^T k)", 1, 0, 4096, 4096, 40, 8 },
	{ "GPU form: apply 40x4096x4096 (v p^T)", 0, 1, 40, 4096, 4096, 8 },
	{ "square 1024^3", 0, 0, 1024, 1024, 1024, 1 },
};

/* ypitch: the output's rows that far apart, as SD 1.5 runs them (the fused
 * kernel writes into the to_out projection's padded input: the pitch
 * op_conv1x1_pv_pitch gives for 64x64 and 32x32 pixels), 0: lq */
typedef struct attn_shape {
	const char *name;
	int bh, d, lq, lk, ypitch;
} attn_shape;

static const attn_shape attns[] = {
	{ "attention 8 heads d40 4096x4096 (level 1 self)", 8, 40, 4096, 4096, 4144 },
	{ "attention 8 heads d80 1024x1024 (level 2 self)", 8, 80, 1024, 1024, 1072 },
	{ "attention 8 heads d40 4096x77 (level 1 cross)", 8, 40, 4096, 77, 4144 },
	{ "attention d40 4096x77 (level 1 cross), dense rows", 8, 40, 4096, 77, 0 },
};

static rt_ctx *rt;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}
static int runs = 5;
static const char *filter;
static int unpacked; /* --unpacked: conv weights in the checkpoint's layout */
static conv_shape custom_conv; /* --conv N,IC,OC,H,W,K,S: one shape of the caller's */

static float *rnd(cu_rng *r, size_t n)
{
	float *p = malloc(n * sizeof(float));
	for (size_t i = 0; p && i < n; i++)
		p[i] = cu_rng_uniform(r) * 2 - 1;
	return p;
}

static int upload(size_t n, const float *data, cl_mem *m)
{
	if (rt_alloc(rt, n * 4, "bench weight", m) != CLUNET_OK)
		return -1;
	return clEnqueueWriteBuffer(rt->queue, *m, CL_TRUE, 0, n * 4, data, 0, NULL, NULL) ==
			       CL_SUCCESS
		       ? 0
		       : -1;
}

static double best_time; /* the fastest of time_graph's runs (s) */

/* Plans g, runs it runs+1 times, returns the median time of ops opi.. to the
 * last (s). */
static double time_graph(cu_graph *g, int out, const void *const *inputs, int opi,
			 const char **kernel)
{
	cu_plan *p = NULL;
	double *t = calloc((size_t)runs, sizeof(double)), med = -1;
	float *host = NULL;
	cu_graph_set_output(g, out);
	if (!t || cu_plan_create(g, &p) != CLUNET_OK) {
		fprintf(stderr, "plan failed: %s\n", clunet_last_error());
		free(t);
		return -1;
	}
	host = malloc(cu_plan_output_bytes(p));
	*kernel = p->g->ops[opi].kernel_name;
	for (int r = -1; host && r < runs; r++) {
		if (cu_plan_run(p, inputs, host) != CLUNET_OK) {
			fprintf(stderr, "run failed: %s\n", clunet_last_error());
			break;
		}
		if (r < 0)
			continue;
		t[r] = 0;
		for (int i = opi; i < p->g->nops; i++) {
			cl_ulong t0 = 0, t1 = 0;
			clGetEventProfilingInfo(p->events[i], CL_PROFILING_COMMAND_START, sizeof(t0),
						&t0, NULL);
			clGetEventProfilingInfo(p->events[i], CL_PROFILING_COMMAND_END, sizeof(t1), &t1,
						NULL);
			t[r] += (double)(t1 - t0) * 1e-9;
		}
		if (r == runs - 1) {
			qsort(t, (size_t)runs, sizeof(double), cmp_double);
			med = t[runs / 2];
			best_time = t[0];
		}
	}
	free(host);
	free(t);
	cu_plan_free(p);
	return med;
}

static void report(const char *name, const char *kernel, double flops, double sec)
{
	double peak = 0, after = 0;
	/* the peak right after the case, the higher of two measurements (the
	 * machine's speed swings from minute to minute) */
	clunet_context_measure_peak(rt, &peak);
	if (sec <= 0) {
		printf("%-42s failed\n", name);
		return;
	}
	clunet_context_measure_peak(rt, &after);
	if (after > peak)
		peak = after;
	printf("%-42s %-14s %9.3f ms %7.1f GFLOP/s %5.1f %% of %.0f (best run %.3f ms, %.1f %%)\n", name,
	       kernel ? kernel : "?", sec * 1e3, flops / sec * 1e-9, 100 * flops / sec * 1e-9 / peak,
	       peak, best_time * 1e3, 100 * flops / best_time * 1e-9 / peak);
	fflush(stdout);
}

static void bench_conv(const conv_shape *c, cu_rng *r)
{
	int oct = conv_panel_width(rt, c->oc), pad = c->k / 2;
	size_t nx = (size_t)c->n * c->ic * c->h * c->w, nw = conv_packed_size(c->oc, c->ic, c->k,
									   c->k, oct);
	float *x = rnd(r, nx), *w = rnd(r, (size_t)c->oc * c->ic * c->k * c->k), *pk = malloc(nw * 4);
	cu_graph *g = cu_graph_new(rt);
	const void *inputs[1] = { x };
	const char *kernel = NULL;
	cl_mem wm = NULL;
	conv_args a;
	int xt, wt, y, first;
	double sec = -1;
	if (!x || !w || !pk || !g)
		goto out;
	conv_pack(w, c->oc, c->ic, c->k, c->k, oct, pk);
	if (upload(unpacked ? (size_t)c->oc * c->ic * c->k * c->k : nw, unpacked ? w : pk, &wm))
		goto out;
	xt = cu_graph_input(g, 0, CU_F32, 4, (int64_t[]){ c->n, c->ic, c->h, c->w });
	if (unpacked) /* as a mapped checkpoint has them (CPU-class devices load that way) */
		wt = cu_graph_weight(g, wm, 0, CU_F32, 4, (int64_t[]){ c->oc, c->ic, c->k, c->k });
	else
		wt = cu_graph_weight(g, wm, 0, CU_F32, 5,
				     (int64_t[]){ (c->oc + oct - 1) / oct, c->ic, c->k, c->k, oct });
	conv_args_init(&a, pad);
	if (c->s == 2) {
		a.stride = 2;
		a.pad_t = a.pad_l = 0; /* diffusers' Downsample2D pads (0, 1, 0, 1) */
		a.pad_b = a.pad_r = 1;
	}
	first = g->nops;
	y = op_conv2d(g, xt, wt, c->oc, c->k, c->k, &a);
	if (y >= 0) {
		double flops = 0;
		/* the convolution's ops (im2col, GEMM, epilogue with CLUNET_CONV=im2col), not the pad */
		if (!strcmp(g->ops[first].impl->kind, "pad"))
			first++;
		for (int i = first; i < g->nops; i++)
			flops += g->ops[i].flops;
		sec = time_graph(g, y, inputs, first, &kernel);
		g = NULL;
		report(c->name, kernel, flops, sec);
	}
out:
	if (g)
		cu_graph_free(g);
	if (wm)
		clReleaseMemObject(wm);
	free(x), free(w), free(pk);
}

static void bench_gemm(const gemm_shape *s, cu_rng *r)
{
	size_t na = (size_t)s->m * s->k * s->batch, nb = (size_t)s->k * s->n * s->batch;
	float *a = rnd(r, na), *b = rnd(r, nb);
	cu_graph *g = cu_graph_new(rt);
	const void *inputs[2] = { a, b };
	const char *kernel = NULL;
	gemm_args x;
	int at, bt, y;
	if (!a || !b || !g)
		goto out;
	memset(&x, 0, sizeof(x));
	x.trans_a = s->ta;
	x.trans_b = s->tb;
	x.m = s->m;
	x.n = s->n;
	x.k = s->k;
	x.lda = s->ta ? s->m : s->k;
	x.ldb = s->tb ? s->k : s->n;
	x.ldc = s->n;
	x.batch = s->batch;
	x.stride_a = (long)s->m * s->k;
	x.stride_b = (long)s->k * s->n;
	x.stride_c = (long)s->m * s->n;
	x.alpha = 1.0f;
	at = cu_graph_input(g, 0, CU_F32, 2, (int64_t[]){ s->batch, (int64_t)s->m * s->k });
	bt = cu_graph_input(g, 1, CU_F32, 2, (int64_t[]){ s->batch, (int64_t)s->k * s->n });
	y = op_gemm(g, at, bt, &x, 3, (int64_t[]){ s->batch, s->m, s->n });
	if (y >= 0) {
		double flops = g->ops[g->nops - 1].flops, sec;
		sec = time_graph(g, y, inputs, g->nops - 1, &kernel);
		g = NULL;
		report(s->name, kernel, flops, sec);
	}
out:
	if (g)
		cu_graph_free(g);
	free(a), free(b);
}

static void bench_attention(const attn_shape *s, cu_rng *r)
{
	const int yp = s->ypitch ? s->ypitch : s->lq;
	size_t nq = (size_t)s->bh * s->d * s->lq, nk = (size_t)s->bh * s->d * s->lk;
	float *q = rnd(r, nq), *k = rnd(r, nk), *v = rnd(r, nk);
	cu_graph *g = cu_graph_new(rt);
	const void *inputs[3] = { q, k, v };
	const char *kernel = NULL;
	int qt, kt, vt, y;
	if (!q || !k || !v || !g)
		goto out;
	qt = cu_graph_input(g, 0, CU_F32, 3, (int64_t[]){ s->bh, s->d, s->lq });
	kt = cu_graph_input(g, 1, CU_F32, 3, (int64_t[]){ s->bh, s->d, s->lk });
	vt = cu_graph_input(g, 2, CU_F32, 3, (int64_t[]){ s->bh, s->d, s->lk });
	y = op_attention_fused_into(g, qt, kt, vt, -1, 1, s->bh, s->d, s->lq, s->lk,
				    1.0f / sqrtf((float)s->d),
				    cu_graph_act(g, 3, (int64_t[]){ s->bh, s->d, yp }), yp);
	if (y >= 0) {
		double flops = g->ops[g->nops - 1].flops, sec;
		sec = time_graph(g, y, inputs, g->nops - 1, &kernel);
		g = NULL;
		report(s->name, kernel, flops, sec);
	}
out:
	if (g)
		cu_graph_free(g);
	free(q), free(k), free(v);
}

int main(int argc, char **argv)
{
	clunet_context_options o;
	cu_rng r;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
			filter = argv[++i];
		else if (!strcmp(argv[i], "--unpacked"))
			unpacked = 1;
		else if (!strcmp(argv[i], "--conv") && i + 1 < argc) {
			conv_shape *c = &custom_conv;
			if (sscanf(argv[++i], "%d,%d,%d,%d,%d,%d,%d", &c->n, &c->ic, &c->oc, &c->h,
				   &c->w, &c->k, &c->s) != 7 || c->n < 1 || c->ic < 1 || c->oc < 1 ||
			    c->h < 1 || c->w < 1 || (c->k != 1 && c->k != 3) || c->s < 1 || c->s > 2) {
				fprintf(stderr, "bench_ops: --conv wants N,IC,OC,H,W,K,S (K 1 or 3, S 1 or 2)\n");
				return 2;
			}
			c->name = argv[i];
		} else {
			fprintf(stderr, "usage: bench_ops [--runs N] [--filter SUBSTRING] [--unpacked] "
					"[--conv N,IC,OC,H,W,K,S]\n");
			return 2;
		}
	}
	if (runs < 1)
		runs = 1;
	clunet_context_options_init(&o);
	o.profiling = 1;
	if (clunet_context_create(&o, &rt) != CLUNET_OK) {
		fprintf(stderr, "cannot create a context: %s\n", clunet_last_error());
		return 1;
	}
	printf("device: %s; median of %d runs; peak: the higher of two measurements after each case\n", rt->info.name,
	       runs);
	cu_rng_seed(&r, 7);
	if (custom_conv.name) { /* only the caller's shape */
		bench_conv(&custom_conv, &r);
		clunet_context_destroy(rt);
		return 0;
	}
	for (size_t i = 0; i < sizeof(convs) / sizeof(convs[0]); i++)
		if (!filter || strstr(convs[i].name, filter))
			bench_conv(&convs[i], &r);
	for (size_t i = 0; i < sizeof(gemms) / sizeof(gemms[0]); i++)
		if (!filter || strstr(gemms[i].name, filter))
			bench_gemm(&gemms[i], &r);
	for (size_t i = 0; i < sizeof(attns) / sizeof(attns[0]); i++)
		if (!filter || strstr(attns[i].name, filter))
			bench_attention(&attns[i], &r);
	clunet_context_destroy(rt);
	return 0;
}
