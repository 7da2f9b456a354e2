/* Every op kernel against a plain C reference (double accumulation) on
 * random inputs, odd sizes included. Each case builds a one-op graph, plans
 * it and runs it like a model would. Set CLUNET_DEVICE_CLASS=gpu to test the
 * GPU-shaped variants on a CPU device. */
#include "testutil.h"

#include "common/common.h"
#include "core/graph.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "runtime/runtime.h"

#define TOL 2e-6

static rt_ctx *rt;
static cu_rng rng;

/* ------------------------------------------------------------ harness */

typedef struct harness {
	cu_graph *g;
	cl_mem bufs[16];
	int nb;
	const void *inputs[8];
	int ni;
} harness;

static void h_init(harness *h)
{
	memset(h, 0, sizeof(*h));
	h->g = cu_graph_new(rt);
}

static int h_input(harness *h, const float *data, int ndim, const int64_t *ne)
{
	h->inputs[h->ni] = data;
	return cu_graph_input(h->g, h->ni++, CU_F32, ndim, ne);
}

static int h_input_i32(harness *h, const int32_t *data, int ndim, const int64_t *ne)
{
	h->inputs[h->ni] = data;
	return cu_graph_input(h->g, h->ni++, CU_I32, ndim, ne);
}

static int h_weight(harness *h, const float *data, size_t n, int ndim, const int64_t *ne)
{
	cl_mem m;
	if (rt_alloc(rt, n * 4, "test weight", &m) != CLUNET_OK)
		return -1;
	clEnqueueWriteBuffer(rt->queue, m, CL_TRUE, 0, n * 4, data, 0, NULL, NULL);
	h->bufs[h->nb++] = m;
	return cu_graph_weight(h->g, m, 0, CU_F32, ndim, ne);
}

/* A weight `off` elements into its buffer (a tensor inside a mapped file). */
static int h_weight_at(harness *h, const float *data, size_t n, size_t off, int ndim,
		       const int64_t *ne)
{
	cl_mem m;
	float junk[7] = { 1e30f, -1e30f, 1e30f, -1e30f, 1e30f, -1e30f, 1e30f };
	if (off > 7 || rt_alloc(rt, (n + off) * 4, "test weight", &m) != CLUNET_OK)
		return -1;
	clEnqueueWriteBuffer(rt->queue, m, CL_TRUE, 0, off * 4, junk, 0, NULL, NULL);
	clEnqueueWriteBuffer(rt->queue, m, CL_TRUE, off * 4, n * 4, data, 0, NULL, NULL);
	h->bufs[h->nb++] = m;
	return cu_graph_weight(h->g, m, off, CU_F32, ndim, ne);
}

/* Plans and runs the graph with output y; compares with want. */
static void h_check(harness *h, int y, const double *want, size_t n, double tol, const char *what)
{
	cu_plan *p = NULL;
	clunet_status st;
	cu_graph_set_output(h->g, y);
	st = cu_plan_create(h->g, &p);
	if (st) {
		CHECK(0, "%s: plan failed: %s", what, clunet_last_error());
		cu_graph_free(h->g);
	} else {
		float *got = malloc(cu_plan_output_bytes(p));
		st = cu_plan_run(p, h->inputs, got);
		CHECK(st == CLUNET_OK, "%s: run failed: %s", what, clunet_last_error());
		if (!st) {
			size_t got_n = (size_t)cu_numel(&p->g->t[p->g->output]);
			double e;
			CHECK(got_n == n, "%s: output has %zu elements, expected %zu", what, got_n, n);
			e = tu_rel_l2(got, want, n < got_n ? n : got_n);
			printf("  %-58s rel L2 %.2e\n", what, e);
			CHECK(e <= tol, "%s: relative L2 error %.3e > %.1e", what, e, tol);
		}
		free(got);
		cu_plan_free(p);
	}
	for (int i = 0; i < h->nb; i++)
		clReleaseMemObject(h->bufs[i]);
}

static float *rnd(size_t n, float scale)
{
	float *v = malloc(n * sizeof(float) + 4);
	for (size_t i = 0; i < n; i++)
		v[i] = scale * cu_rng_normal(&rng);
	return v;
}

static double act_ref(double x, cu_act a)
{
	switch (a) {
	case CU_ACT_SILU: return x / (1 + exp(-x));
	case CU_ACT_MISH: return x * tanh(log1p(exp(x)));
	case CU_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
	case CU_ACT_RELU: return x > 0 ? x : 0;
	default: return x;
	}
}

/* " VARIANT" when CLUNET_VARIANT forces one (for a check's name), else "" */
static const char *forced_note(void)
{
	static char note[64];
	const char *v = getenv("CLUNET_VARIANT");
	snprintf(note, sizeof(note), "%s%s", v ? " " : "", v ? v : "");
	return note;
}

/* ------------------------------------------------------------ conv2d */

typedef struct conv_case {
	int n, ic, oc, h, w, k, s, pt, pl, pb, pr, ups, bias, bias2, res;
	float div;
	cu_act act;
	int linear; /* 2-D input [n, ic] */
} conv_case;

/* unpacked: the weights as the checkpoint has them, [OC][IC][K][K], 3 floats
 * into their buffer (zero-copy weights on CPU-class devices); else packed */
static void test_conv(const conv_case *c, int unpacked)
{
	harness h;
	int lh = c->linear ? 1 : c->h * (c->ups ? 2 : 1), lw = c->linear ? 1 : c->w * (c->ups ? 2 : 1);
	int ih = c->linear ? 1 : c->h, iw = c->linear ? 1 : c->w;
	int oh = (lh + c->pt + c->pb - c->k) / c->s + 1, ow = (lw + c->pl + c->pr - c->k) / c->s + 1;
	size_t nx = (size_t)c->n * c->ic * ih * iw, nw = (size_t)c->oc * c->ic * c->k * c->k;
	size_t ny = (size_t)c->n * c->oc * oh * ow;
	float *x = rnd(nx, 1), *w = rnd(nw, 1.0f / sqrtf((float)(c->ic * c->k * c->k)));
	float *b = rnd((size_t)c->oc, 0.5f), *b2 = rnd((size_t)c->n * c->oc, 0.5f), *r = rnd(ny, 1);
	int oct = conv_panel_width(rt, c->oc);
	float *packed = malloc(conv_packed_size(c->oc, c->ic, c->k, c->k, oct) * 4);
	double *want = malloc(ny * sizeof(double));
	char what[256];
	conv_args a;
	int xt, wt, y;

	for (int n = 0; n < c->n; n++)
		for (int o = 0; o < c->oc; o++)
			for (int oy = 0; oy < oh; oy++)
				for (int ox = 0; ox < ow; ox++) {
					double acc = 0;
					for (int i = 0; i < c->ic; i++)
						for (int ky = 0; ky < c->k; ky++)
							for (int kx = 0; kx < c->k; kx++) {
								int iy = oy * c->s - c->pt + ky, ix = ox * c->s - c->pl + kx;
								if (iy < 0 || iy >= lh || ix < 0 || ix >= lw)
									continue;
								if (c->ups) {
									iy /= 2;
									ix /= 2;
								}
								acc += (double)w[((o * c->ic + i) * c->k + ky) * c->k + kx] *
								       x[((size_t)(n * c->ic + i) * ih + iy) * iw + ix];
							}
					size_t at = ((size_t)(n * c->oc + o) * oh + oy) * ow + ox;
					if (c->bias)
						acc += b[o];
					if (c->bias2)
						acc += b2[n * c->oc + o];
					if (c->res)
						acc += r[at];
					acc /= c->div;
					want[at] = act_ref(acc, c->act);
				}

	h_init(&h);
	conv_pack(w, c->oc, c->ic, c->k, c->k, oct, packed);
	if (c->linear)
		xt = h_input(&h, x, 2, (int64_t[]){ c->n, c->ic });
	else
		xt = h_input(&h, x, 4, (int64_t[]){ c->n, c->ic, ih, iw });
	if (unpacked)
		wt = h_weight_at(&h, w, nw, 3, 4, (int64_t[]){ c->oc, c->ic, c->k, c->k });
	else
		wt = h_weight(&h, packed, conv_packed_size(c->oc, c->ic, c->k, c->k, oct), 5,
			      (int64_t[]){ (c->oc + oct - 1) / oct, c->ic, c->k, c->k, oct });
	conv_args_init(&a, 0);
	a.stride = c->s;
	a.pad_t = c->pt;
	a.pad_l = c->pl;
	a.pad_b = c->pb;
	a.pad_r = c->pr;
	a.upsample = c->ups;
	a.out_div = c->div;
	a.act = c->act;
	a.bias = c->bias ? h_weight(&h, b, (size_t)c->oc, 1, (int64_t[]){ c->oc }) : -1;
	a.bias2 = c->bias2 ? h_input(&h, b2, 2, (int64_t[]){ c->n, c->oc }) : -1;
	if (c->res)
		a.res = c->linear ? h_input(&h, r, 2, (int64_t[]){ c->n, c->oc })
				  : h_input(&h, r, 4, (int64_t[]){ c->n, c->oc, oh, ow });
	y = op_conv2d(h.g, xt, wt, c->oc, c->k, c->k, &a);
	snprintf(what, sizeof(what), "conv2d n%d %d->%d %dx%d k%d s%d pad %d,%d,%d,%d%s%s%s%s act%d%s%s",
		 c->n, c->ic, c->oc, ih, iw, c->k, c->s, c->pt, c->pl, c->pb, c->pr,
		 c->ups ? " up" : "", c->bias2 ? " bias2" : "", c->res ? " res" : "",
		 c->linear ? " linear" : "", c->act, unpacked ? " unpacked" : "", forced_note());
	h_check(&h, y, want, ny, TOL, what);
	free(x), free(w), free(b), free(b2), free(r), free(packed), free(want);
}

static void tests_conv(void)
{
	static const conv_case cases[] = {
		{ 2, 3, 5, 7, 9, 3, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, CU_ACT_NONE, 0 },
		{ 1, 17, 33, 11, 13, 3, 2, 1, 1, 1, 1, 0, 1, 0, 0, 1, CU_ACT_NONE, 0 },
		{ 2, 16, 16, 8, 8, 3, 2, 0, 0, 1, 1, 0, 1, 0, 0, 1, CU_ACT_NONE, 0 },
		{ 1, 5, 70, 6, 7, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1.41421356f, CU_ACT_NONE, 0 },
		{ 1, 9, 64, 5, 5, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, CU_ACT_NONE, 0 },
		{ 3, 37, 130, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, CU_ACT_SILU, 1 },
		{ 2, 64, 129, 16, 16, 3, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, CU_ACT_GELU, 0 },
		{ 1, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, CU_ACT_NONE, 0 },
		{ 1, 4, 6, 9, 9, 5, 1, 2, 2, 2, 2, 0, 1, 0, 0, 1, CU_ACT_MISH, 0 },
		{ 2, 16, 3, 12, 10, 3, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, CU_ACT_NONE, 0 },
		{ 1, 48, 96, 4, 4, 3, 1, 1, 1, 1, 1, 0, 1, 1, 0, 2.0f, CU_ACT_RELU, 0 },
		{ 2, 3, 7, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 3.0f, CU_ACT_NONE, 1 },
		/* stride 2 over odd sizes (phase planes), asymmetric padding, residual */
		{ 2, 37, 45, 21, 19, 3, 2, 0, 0, 1, 1, 0, 1, 1, 1, 1, CU_ACT_SILU, 0 },
		{ 1, 11, 19, 33, 7, 3, 2, 1, 1, 1, 1, 0, 1, 0, 0, 1, CU_ACT_NONE, 0 },
		{ 1, 6, 9, 9, 15, 5, 2, 2, 2, 2, 2, 0, 1, 0, 0, 1, CU_ACT_NONE, 0 },
		/* more pixels than one tile, odd widths, upsampled */
		{ 1, 13, 21, 23, 29, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, CU_ACT_NONE, 0 },
		{ 2, 30, 17, 37, 41, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, CU_ACT_GELU, 0 },
	};
	/* conv_pv's row tiles (tuning candidates): whole rows, rows of one vector
	 * with the last tile moved up (odd heights), rows a vector does not divide
	 * (lanes past the row's end), stride 2, upsampled, 1x1 */
	static const char *const rows[] = { "conv_pv:vw=8,pv=2,ocr=6,rows=1",
					    "conv_pv:vw=8,pv=3,ocr=4,rows=3",
					    "conv_pv:vw=16,pv=2,ocr=5,rows=2",
					    "conv_pv:vw=16,pv=4,ocr=5,rows=4" };
	static const int rows_of[] = { 1, 3, 2, 4 }, row_cases[] = { 1, 6, 12, 13, 15, 16 };
	for (size_t i = 0; i < CU_ARRAY_LEN(cases); i++) {
		test_conv(&cases[i], 0);
		if (rt->is_cpu) /* only CPU-class devices use weights in the file's layout */
			test_conv(&cases[i], 1);
	}
	for (size_t v = 0; rt->is_cpu && v < CU_ARRAY_LEN(rows); v++) {
		setenv("CLUNET_VARIANT", rows[v], 1);
		for (size_t j = 0; j < CU_ARRAY_LEN(row_cases); j++) {
			const conv_case *c = &cases[row_cases[j]];
			int lh = c->h * (c->ups ? 2 : 1);
			if ((lh + c->pt + c->pb - c->k) / c->s + 1 >= rows_of[v])
				test_conv(c, j % 2 || v == 0);
		}
		unsetenv("CLUNET_VARIANT");
	}
}

/* A 1x1 convolution over an input already in conv_pv's padded layout
 * (op_conv1x1_padded; CPU-class devices): each plane's pixels, then values
 * up to the pitch that must not reach the output (huge ones here). Also the
 * errors for an input of another pitch and for a strided convolution. */
static void test_conv1x1_padded(int n, int ic, int oc, int hh, int ww, int bias, int res,
				float div, cu_act act, int unpacked)
{
	harness h;
	const int px = hh * ww;
	float *x = rnd((size_t)n * ic * px, 1), *w = rnd((size_t)oc * ic, 1.0f / sqrtf((float)ic));
	float *b = rnd((size_t)oc, 0.5f), *r = rnd((size_t)n * oc * px, 1), *xp, *packed;
	int oct = conv_panel_width(rt, oc), pitch, wt, xt, y;
	double *want = malloc((size_t)n * oc * px * sizeof(double));
	char what[160];
	conv_args a;
	for (int i = 0; i < n; i++)
		for (int o = 0; o < oc; o++)
			for (int q = 0; q < px; q++) {
				double acc = bias ? b[o] : 0;
				size_t at = ((size_t)i * oc + o) * px + q;
				for (int c = 0; c < ic; c++)
					acc += (double)w[o * ic + c] * x[((size_t)i * ic + c) * px + q];
				if (res)
					acc += r[at];
				want[at] = act_ref(acc / div, act);
			}
	h_init(&h);
	packed = malloc(conv_packed_size(oc, ic, 1, 1, oct) * 4);
	conv_pack(w, oc, ic, 1, 1, oct, packed);
	if (unpacked)
		wt = h_weight_at(&h, w, (size_t)oc * ic, 3, 4, (int64_t[]){ oc, ic, 1, 1 });
	else
		wt = h_weight(&h, packed, conv_packed_size(oc, ic, 1, 1, oct), 5,
			      (int64_t[]){ (oc + oct - 1) / oct, ic, 1, 1, oct });
	pitch = op_conv1x1_pv_pitch(h.g, wt, ic, oc, hh, ww);
	/* CLUNET_CONV=direct|im2col takes conv_pv away (im2col where the panels
	 * tile the channels): then there is no padded layout to offer */
	if (getenv("CLUNET_CONV") && strcmp(getenv("CLUNET_CONV"), "pv") && pitch == 0)
		printf("  %-58s none (CLUNET_CONV=%s)\n", "conv1x1 padded: pitch", getenv("CLUNET_CONV"));
	else
		CHECK(pitch >= px && pitch % 16 == 0 && pitch % 32 != 0,
		      "conv1x1 padded %dx%d: pitch %d is not an odd number of 64-byte lines >= the "
		      "pixels", hh, ww, pitch);
	if (pitch < px) {
		cu_graph_free(h.g);
		for (int i = 0; i < h.nb; i++)
			clReleaseMemObject(h.bufs[i]);
		free(x), free(w), free(b), free(r), free(packed), free(want);
		return;
	}
	xp = malloc((size_t)n * ic * pitch * sizeof(float));
	for (size_t i = 0; i < (size_t)n * ic; i++)
		for (int q = 0; q < pitch; q++)
			xp[i * pitch + q] = q < px ? x[i * px + q] : (q % 2 ? 1e30f : -1e30f);
	xt = h_input(&h, xp, 3, (int64_t[]){ n, ic, pitch });
	conv_args_init(&a, 0);
	a.bias = bias ? h_weight(&h, b, (size_t)oc, 1, (int64_t[]){ oc }) : -1;
	a.res = res ? h_input(&h, r, 4, (int64_t[]){ n, oc, hh, ww }) : -1;
	a.out_div = div;
	a.act = act;
	/* an input of another pitch, a strided convolution: named errors */
	{
		cu_graph *g = cu_graph_new(rt);
		int bad = cu_graph_input(g, 0, CU_F32, 3, (int64_t[]){ n, ic, pitch + 16 });
		int gw = cu_graph_weight(g, h.bufs[0], unpacked ? 3 : 0, CU_F32, cu_t(h.g, wt)->ndim,
					 cu_t(h.g, wt)->ne);
		conv_args s2;
		conv_args_init(&s2, 0);
		CHECK(op_conv1x1_padded(g, bad, hh, ww, gw, oc, &s2) < 0 &&
		      strstr(clunet_last_error(), "padded layout"),
		      "conv1x1 padded: another pitch was not refused (%s)", clunet_last_error());
		cu_graph_free(g);
		g = cu_graph_new(rt);
		bad = cu_graph_input(g, 0, CU_F32, 3, (int64_t[]){ n, ic, pitch });
		gw = cu_graph_weight(g, h.bufs[0], unpacked ? 3 : 0, CU_F32, cu_t(h.g, wt)->ndim,
				     cu_t(h.g, wt)->ne);
		conv_args_init(&s2, 0);
		s2.stride = 2;
		CHECK(op_conv1x1_padded(g, bad, hh, ww, gw, oc, &s2) < 0,
		      "conv1x1 padded: a stride-2 convolution was not refused");
		cu_graph_free(g);
	}
	y = op_conv1x1_padded(h.g, xt, hh, ww, wt, oc, &a);
	snprintf(what, sizeof(what), "conv1x1 padded n%d %d->%d %dx%d (pitch %d)%s%s act%d%s%s", n,
		 ic, oc, hh, ww, pitch, bias ? " bias" : "", res ? " res" : "", act,
		 unpacked ? " unpacked" : "", forced_note());
	h_check(&h, y, want, (size_t)n * oc * px, TOL, what);
	free(x), free(w), free(b), free(r), free(packed), free(want), free(xp);
}

static void tests_conv1x1_padded(void)
{
	if (!rt->is_cpu) /* conv_pv runs only on CPU-class devices: no padded layout there */
		return;
	test_conv1x1_padded(2, 13, 11, 5, 7, 1, 1, 1.41421356f, CU_ACT_NONE, 1);
	test_conv1x1_padded(1, 40, 37, 8, 8, 1, 1, 1, CU_ACT_NONE, 0);
	test_conv1x1_padded(1, 33, 70, 9, 23, 0, 0, 1, CU_ACT_SILU, 1);
	test_conv1x1_padded(3, 17, 129, 16, 16, 1, 1, 2.0f, CU_ACT_GELU, 0);
	setenv("CLUNET_VARIANT", "conv_pv:vw=8,pv=2,ocr=6", 1);
	test_conv1x1_padded(2, 13, 11, 5, 7, 1, 1, 1, CU_ACT_NONE, 1);
	unsetenv("CLUNET_VARIANT");
}

/* GEGLU folded into the projection (op_conv_geglu): x, g = halves of W x + b;
 * x * gelu(g). Unpacked weights take the fused kernel on CPU-class devices,
 * packed ones the conv + geglu pair. */
static void test_conv_geglu(int n, int ic, int f, int hh, int ww, int unpacked)
{
	harness h;
	size_t px = (size_t)hh * ww, nx = (size_t)n * ic * px, nw = (size_t)2 * f * ic;
	size_t ny = (size_t)n * f * px;
	float *x = rnd(nx, 1), *w = rnd(nw, 1.0f / sqrtf((float)ic)), *b = rnd((size_t)2 * f, 0.5f);
	int oct = conv_panel_width(rt, 2 * f);
	float *packed = malloc(conv_packed_size(2 * f, ic, 1, 1, oct) * 4);
	double *want = malloc(ny * sizeof(double));
	char what[256];
	conv_args a;
	int xt, wt, y;
	for (int s = 0; s < n; s++)
		for (int o = 0; o < f; o++)
			for (size_t p = 0; p < px; p++) {
				double v = b[o], g = b[f + o];
				for (int i = 0; i < ic; i++) {
					double xi = x[((size_t)s * ic + i) * px + p];
					v += (double)w[(size_t)o * ic + i] * xi;
					g += (double)w[(size_t)(f + o) * ic + i] * xi;
				}
				want[((size_t)s * f + o) * px + p] = v * act_ref(g, CU_ACT_GELU);
			}
	h_init(&h);
	conv_pack(w, 2 * f, ic, 1, 1, oct, packed);
	xt = h_input(&h, x, 4, (int64_t[]){ n, ic, hh, ww });
	if (unpacked)
		wt = h_weight_at(&h, w, nw, 5, 4, (int64_t[]){ 2 * f, ic, 1, 1 });
	else
		wt = h_weight(&h, packed, conv_packed_size(2 * f, ic, 1, 1, oct), 5,
			      (int64_t[]){ (2 * f + oct - 1) / oct, ic, 1, 1, oct });
	conv_args_init(&a, 0);
	a.bias = h_weight(&h, b, (size_t)2 * f, 1, (int64_t[]){ 2 * f });
	y = op_conv_geglu(h.g, xt, wt, 2 * f, &a);
	snprintf(what, sizeof(what), "conv+geglu n%d %d->2x%d %dx%d%s%s", n, ic, f, hh, ww,
		 unpacked ? " unpacked (fused)" : "", forced_note());
	h_check(&h, y, want, ny, TOL, what);
	free(x), free(w), free(b), free(packed), free(want);
}

static void tests_conv_geglu(void)
{
	static const int cases[][5] = { { 1, 37, 21, 5, 13 }, { 2, 16, 8, 4, 4 }, { 1, 9, 3, 3, 11 },
					{ 2, 64, 40, 7, 9 }, { 1, 20, 7, 1, 77 } };
	for (size_t i = 0; i < CU_ARRAY_LEN(cases); i++) {
		test_conv_geglu(cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4], 0);
		if (rt->is_cpu)
			test_conv_geglu(cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4], 1);
	}
	if (rt->is_cpu) { /* the fused epilogue under row tiles (rows a vector does not divide) */
		setenv("CLUNET_VARIANT", "conv_pv:vw=8,pv=2,ocr=6,rows=2", 1);
		test_conv_geglu(2, 64, 40, 7, 9, 1);
		test_conv_geglu(2, 16, 8, 4, 4, 1);
		unsetenv("CLUNET_VARIANT");
	}
}

/* ------------------------------------------------------------ group norm */

static void test_group_norm(int n, int c, int hh, int ww, int groups, int affine, int ss,
			    cu_act act, float eps)
{
	harness h;
	size_t hw = (size_t)hh * ww, nx = (size_t)n * c * hw;
	float *x = rnd(nx, 2), *gm = rnd((size_t)c, 0.3f), *bt = rnd((size_t)c, 0.3f);
	float *sv = rnd((size_t)n * 2 * c, 0.5f);
	double *want = malloc(nx * sizeof(double));
	int cpg = c / groups, xt, y;
	char what[160];
	for (int i = 0; i < c; i++)
		gm[i] += 1.0f;
	for (int b = 0; b < n; b++)
		for (int g = 0; g < groups; g++) {
			const float *xs = x + ((size_t)b * c + (size_t)g * cpg) * hw;
			double mean = 0, var = 0;
			size_t span = (size_t)cpg * hw;
			for (size_t i = 0; i < span; i++)
				mean += xs[i];
			mean /= (double)span;
			for (size_t i = 0; i < span; i++)
				var += (xs[i] - mean) * (xs[i] - mean);
			var /= (double)span;
			for (int cc = 0; cc < cpg; cc++) {
				int ch = g * cpg + cc;
				for (size_t j = 0; j < hw; j++) {
					double v = (xs[cc * hw + j] - mean) / sqrt(var + eps);
					if (affine)
						v = v * gm[ch] + bt[ch];
					if (ss)
						v = v * (1 + sv[(size_t)b * 2 * c + ch]) + sv[(size_t)b * 2 * c + c + ch];
					want[((size_t)b * c + ch) * hw + j] = act_ref(v, act);
				}
			}
		}
	h_init(&h);
	xt = h_input(&h, x, 4, (int64_t[]){ n, c, hh, ww });
	y = op_group_norm(h.g, xt, affine ? h_weight(&h, gm, (size_t)c, 1, (int64_t[]){ c }) : -1,
			  affine ? h_weight(&h, bt, (size_t)c, 1, (int64_t[]){ c }) : -1, groups, eps,
			  ss ? h_input(&h, sv, 2, (int64_t[]){ n, 2 * c }) : -1, act);
	snprintf(what, sizeof(what), "group_norm n%d c%d %dx%d g%d%s%s act%d eps%g", n, c, hh, ww,
		 groups, affine ? " affine" : "", ss ? " scale-shift" : "", act, eps);
	h_check(&h, y, want, nx, TOL, what);
	free(x), free(gm), free(bt), free(sv), free(want);
}

/* ------------------------------------------------------------ small ops */

static void test_softmax(int rows, int cols, float scale)
{
	harness h;
	float *x = rnd((size_t)rows * cols, 3);
	double *want = malloc((size_t)rows * cols * sizeof(double));
	char what[96];
	for (int r = 0; r < rows; r++) {
		double m = -INFINITY, s = 0;
		for (int j = 0; j < cols; j++)
			m = fmax(m, (double)x[r * cols + j] * scale);
		for (int j = 0; j < cols; j++)
			s += exp((double)x[r * cols + j] * scale - m);
		for (int j = 0; j < cols; j++)
			want[r * cols + j] = exp((double)x[r * cols + j] * scale - m) / s;
	}
	h_init(&h);
	snprintf(what, sizeof(what), "softmax %dx%d scale %g", rows, cols, scale);
	h_check(&h, op_softmax(h.g, h_input(&h, x, 2, (int64_t[]){ rows, cols }), scale), want,
		(size_t)rows * cols, TOL, what);
	free(x), free(want);
}

static void test_eltwise(void)
{
	size_t n = 3 * 5 * 7 * 9;
	float *a = rnd(n, 4), *b = rnd(n, 1), *d = rnd(3, 1);
	double *want = malloc(n * sizeof(double));
	harness h;
	for (cu_act act = CU_ACT_SILU; act <= CU_ACT_RELU; act++) {
		char what[64];
		for (size_t i = 0; i < n; i++)
			want[i] = act_ref(a[i], act);
		h_init(&h);
		snprintf(what, sizeof(what), "activation %d on 945 values", act);
		h_check(&h, op_act(h.g, h_input(&h, a, 1, (int64_t[]){ (int64_t)n }), act), want, n,
			TOL, what);
	}
	for (size_t i = 0; i < n; i++)
		want[i] = (double)a[i] + b[i];
	h_init(&h);
	h_check(&h, op_add(h.g, h_input(&h, a, 1, (int64_t[]){ (int64_t)n }),
			   h_input(&h, b, 1, (int64_t[]){ (int64_t)n })), want, n, TOL, "add 945");
	for (size_t i = 0; i < n; i++)
		want[i] = 2.0 * a[i] - 1.0;
	h_init(&h);
	h_check(&h, op_affine(h.g, h_input(&h, a, 1, (int64_t[]){ (int64_t)n }), 2.0f, -1.0f), want,
		n, TOL, "affine 2x - 1");
	for (size_t i = 0; i < n; i++)
		want[i] = (double)a[i] / d[i / (n / 3)];
	h_init(&h);
	h_check(&h, op_div_rows(h.g, h_input(&h, a, 4, (int64_t[]){ 3, 5, 7, 9 }),
				h_input(&h, d, 1, (int64_t[]){ 3 })), want, n, TOL, "div_rows [3,5,7,9] / [3]");
	free(a), free(b), free(d), free(want);
}

static void test_concat(int n, int ca, int cb, int hh, int ww)
{
	size_t hw = (size_t)hh * ww, no = (size_t)n * (ca + cb) * hw;
	float *a = rnd((size_t)n * ca * hw, 1), *b = rnd((size_t)n * cb * hw, 1);
	double *want = malloc(no * sizeof(double));
	harness h;
	char what[96];
	for (int i = 0; i < n; i++)
		for (int c = 0; c < ca + cb; c++)
			for (size_t j = 0; j < hw; j++)
				want[((size_t)i * (ca + cb) + c) * hw + j] =
					c < ca ? a[((size_t)i * ca + c) * hw + j] : b[((size_t)i * cb + c - ca) * hw + j];
	h_init(&h);
	snprintf(what, sizeof(what), "concat [%d,%d,%d,%d] + [%d,%d,%d,%d]", n, ca, hh, ww, n, cb, hh, ww);
	h_check(&h, op_concat(h.g, h_input(&h, a, 4, (int64_t[]){ n, ca, hh, ww }),
			      h_input(&h, b, 4, (int64_t[]){ n, cb, hh, ww })), want, no, 0, what);
	free(a), free(b), free(want);
}

static void test_resample(void)
{
	int planes = 2 * 3, ih = 5, iw = 7;
	float *x = rnd((size_t)planes * 10 * 14, 1);
	double *want = malloc((size_t)planes * 20 * 28 * sizeof(double));
	harness h;
	/* nearest x2 and to an odd size */
	int sizes[2][2] = { { 10, 14 }, { 9, 13 } };
	for (int s = 0; s < 2; s++) {
		int oh = sizes[s][0], ow = sizes[s][1];
		char what[96];
		for (int p = 0; p < planes; p++)
			for (int y = 0; y < oh; y++)
				for (int xx = 0; xx < ow; xx++) {
					int sy = (int)floorf((float)y * ((float)ih / (float)oh));
					int sx = (int)floorf((float)xx * ((float)iw / (float)ow));
					want[(p * oh + y) * ow + xx] = x[(p * ih + sy) * iw + sx];
				}
		h_init(&h);
		snprintf(what, sizeof(what), "nearest [2,3,5,7] -> %dx%d", oh, ow);
		h_check(&h, op_nearest(h.g, h_input(&h, x, 4, (int64_t[]){ 2, 3, ih, iw }), oh, ow), want,
			(size_t)planes * oh * ow, 0, what);
	}
	/* 2x2 average pooling of 10x14 */
	for (int p = 0; p < planes; p++)
		for (int y = 0; y < 5; y++)
			for (int xx = 0; xx < 7; xx++) {
				const float *q = x + (p * 10 + 2 * y) * 14 + 2 * xx;
				want[(p * 5 + y) * 7 + xx] = ((double)q[0] + q[1] + q[14] + q[15]) / 4;
			}
	h_init(&h);
	h_check(&h, op_avgpool2(h.g, h_input(&h, x, 4, (int64_t[]){ 2, 3, 10, 14 })), want,
		(size_t)planes * 35, TOL, "avg_pool 2x2 of [2,3,10,14]");
	/* upfirdn2d: FIR down (taps /8, pad 1,1) and up (taps /4, pad 2,1) */
	for (int up = 1; up <= 2; up++) {
		int down = up == 1 ? 2 : 1, pad0 = up == 1 ? 1 : 2, pad1 = 1;
		float taps[4] = { 1, 3, 3, 1 };
		int oh = (ih * up + pad0 + pad1 - 4) / down + 1, ow = (iw * up + pad0 + pad1 - 4) / down + 1;
		char what[96];
		for (int i = 0; i < 4; i++)
			taps[i] /= up == 1 ? 8.0f : 4.0f;
		for (int p = 0; p < planes; p++)
			for (int y = 0; y < oh; y++)
				for (int xx = 0; xx < ow; xx++) {
					double acc = 0;
					for (int a = 0; a < 4; a++)
						for (int b = 0; b < 4; b++) {
							int py = y * down + a - pad0, px = xx * down + b - pad0;
							if (py < 0 || px < 0 || py % up || px % up || py / up >= ih ||
							    px / up >= iw)
								continue;
							acc += (double)taps[3 - a] * taps[3 - b] *
							       x[(p * ih + py / up) * iw + px / up];
						}
					want[(p * oh + y) * ow + xx] = acc;
				}
		h_init(&h);
		snprintf(what, sizeof(what), "upfirdn2d [2,3,5,7] up %d down %d pad %d,%d", up, down,
			 pad0, pad1);
		h_check(&h, op_upfirdn2d(h.g, h_input(&h, x, 4, (int64_t[]){ 2, 3, ih, iw }),
					 h_weight(&h, taps, 4, 1, (int64_t[]){ 4 }), up, down, pad0,
					 pad1), want, (size_t)planes * oh * ow, TOL, what);
	}
	free(x), free(want);
}

static void test_embeddings(void)
{
	harness h;
	float t[3] = { 0.0f, 12.75f, 999.0f }, sig[3] = { 0.5f, 3.0f, 80.0f };
	int32_t idx[3] = { 4, 0, 6 };
	float *table = rnd(7 * 11, 1), *w = rnd(9, 16);
	double want[3 * 64];
	/* sinusoidal: odd and even widths, flip and shift */
	for (int dim = 32; dim <= 33; dim++)
		for (int flip = 0; flip <= 1; flip++) {
			float shift = (float)flip; /* (flip, shift) = (0, 0) and (1, 1) */
			int nh = dim / 2;
			char what[96];
			for (int r = 0; r < 3; r++)
				for (int j = 0; j < dim; j++) {
					double v = 0;
					if (j < 2 * nh) {
						int second = j >= nh, i = second ? j - nh : j;
						float e = (-9.2103403719761836f * (float)i) / ((float)nh - shift);
						double arg = (double)(t[r] * expf(e));
						v = (flip ? !second : second) ? cos(arg) : sin(arg);
					}
					want[r * dim + j] = v;
				}
			h_init(&h);
			snprintf(what, sizeof(what), "timestep_embedding dim %d flip %d shift %g", dim, flip,
				 shift);
			h_check(&h, op_timestep_embed(h.g, h_input(&h, t, 1, (int64_t[]){ 3 }), dim, flip,
						      shift), want, (size_t)3 * dim, 2e-5, what);
		}
	for (int flip = 0; flip <= 1; flip++)
		for (int lg = 0; lg <= 1; lg++) {
			char what[96];
			for (int r = 0; r < 3; r++)
				for (int j = 0; j < 18; j++) {
					int second = j >= 9, i = second ? j - 9 : j;
					float x = lg ? logf(sig[r]) : sig[r];
					double p = (double)(((x * w[i]) * 2.0f) * 3.14159265358979f);
					want[r * 18 + j] = (flip ? !second : second) ? cos(p) : sin(p);
				}
			h_init(&h);
			snprintf(what, sizeof(what), "fourier_embedding 9 freqs log %d flip %d", lg, flip);
			h_check(&h, op_fourier_embed(h.g, h_input(&h, sig, 1, (int64_t[]){ 3 }),
						     h_weight(&h, w, 9, 1, (int64_t[]){ 9 }), lg, flip),
				want, 54, 2e-5, what);
		}
	for (int r = 0; r < 3; r++)
		for (int j = 0; j < 11; j++)
			want[r * 11 + j] = table[idx[r] * 11 + j];
	h_init(&h);
	h_check(&h, op_embed(h.g, h_input_i32(&h, idx, 1, (int64_t[]){ 3 }),
			     h_weight(&h, table, 77, 2, (int64_t[]){ 7, 11 })), want, 33, 0,
		"embedding 3 rows of a [7, 11] table");
	free(table), free(w);
}

static void test_gemm(int ta, int tb, int m, int n, int k, int batch, float alpha)
{
	harness h;
	size_t na = (size_t)batch * m * k, nb = (size_t)batch * k * n, nc = (size_t)batch * m * n;
	float *a = rnd(na, 1), *b = rnd(nb, 1);
	double *want = malloc(nc * sizeof(double));
	gemm_args g;
	char what[96];
	for (int q = 0; q < batch; q++)
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++) {
				double acc = 0;
				for (int l = 0; l < k; l++) {
					double av = ta ? a[(size_t)q * m * k + (size_t)l * m + i]
						       : a[(size_t)q * m * k + (size_t)i * k + l];
					double bv = tb ? b[(size_t)q * k * n + (size_t)j * k + l]
						       : b[(size_t)q * k * n + (size_t)l * n + j];
					acc += av * bv;
				}
				want[(size_t)q * m * n + (size_t)i * n + j] = alpha * acc;
			}
	memset(&g, 0, sizeof(g));
	g.trans_a = ta;
	g.trans_b = tb;
	g.m = m;
	g.n = n;
	g.k = k;
	g.lda = ta ? m : k;
	g.ldb = tb ? k : n;
	g.ldc = n;
	g.stride_a = (long)m * k;
	g.stride_b = (long)k * n;
	g.stride_c = (long)m * n;
	g.batch = batch;
	g.alpha = alpha;
	h_init(&h);
	snprintf(what, sizeof(what), "gemm %s%s %dx%dx%d batch %d alpha %g", ta ? "T" : "N",
		 tb ? "T" : "N", m, n, k, batch, alpha);
	h_check(&h, op_gemm(h.g, h_input(&h, a, 1, (int64_t[]){ (int64_t)na }),
			    h_input(&h, b, 1, (int64_t[]){ (int64_t)nb }), &g, 3,
			    (int64_t[]){ batch, m, n }), want, nc, TOL, what);
	free(a), free(b), free(want);
}

/* ------------------------------------------------------------ 1-D ops */

/* Weights for nn-level tests: deterministic values from the name. */
static float tw(const char *name, size_t i)
{
	uint64_t h = 1469598103934665603ull;
	cu_rng r;
	for (const char *s = name; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	cu_rng_seed(&r, h + i * 0x9e3779b97f4a7c15ull);
	return 0.3f * cu_rng_normal(&r);
}

static clunet_status test_fetch(void *user, const char *name, int ndim, const int64_t *shape,
				nn_wrole role, float *data)
{
	size_t n = 1;
	(void)user, (void)role;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	for (size_t i = 0; i < n; i++)
		data[i] = tw(name, i);
	return CLUNET_OK;
}

static nn_store *store;

/* A fresh weight store per case: names repeat across cases with new shapes. */
static void nn_begin(harness *h, nn_ctx *c)
{
	nn_store_free(store);
	store = nn_store_new(rt, test_fetch, NULL, NULL);
	h_init(h);
	nn_ctx_init(c, h->g, store);
}

/* Conv1d (k, stride, pad) and ConvTranspose1d (k 4, stride 2, padding 1) through nn/. */
static void test_conv1d(int n, int ic, int oc, int len, int k, int stride, int pad, int transposed)
{
	harness h;
	nn_ctx c;
	int ol = transposed ? (len - 1) * 2 - 2 * pad + k : (len + 2 * pad - k) / stride + 1;
	size_t ny = (size_t)n * oc * ol;
	float *x = rnd((size_t)n * ic * len, 1);
	double *want = calloc(ny, sizeof(double));
	char what[128];
	conv_args a;
	int y;
	for (int b = 0; b < n; b++)
		for (int o = 0; o < oc; o++)
			for (int p = 0; p < ol; p++) {
				double acc = tw("w.bias", (size_t)o);
				for (int i = 0; i < ic; i++)
					for (int t = 0; t < k; t++) {
						int j;
						if (transposed) { /* p = 2j - pad + t */
							if ((p + pad - t) % 2)
								continue;
							j = (p + pad - t) / 2;
							if (p + pad - t < 0 || j >= len)
								continue;
							acc += (double)tw("w.weight", ((size_t)i * oc + o) * k + t) *
							       x[((size_t)b * ic + i) * len + j];
						} else {
							j = p * stride - pad + t;
							if (j < 0 || j >= len)
								continue;
							acc += (double)tw("w.weight", ((size_t)o * ic + i) * k + t) *
							       x[((size_t)b * ic + i) * len + j];
						}
					}
				want[((size_t)b * oc + o) * ol + p] = acc;
			}
	nn_begin(&h, &c);
	if (transposed) {
		y = nn_conv_transpose1d(&c, "w", h_input(&h, x, 3, (int64_t[]){ n, ic, len }), ic, oc, k, pad);
	} else {
		conv_args_init(&a, 0);
		a.stride = stride;
		a.pad_l = a.pad_r = pad;
		y = nn_conv1d(&c, "w", h_input(&h, x, 3, (int64_t[]){ n, ic, len }), ic, oc, k, 1, &a);
	}
	snprintf(what, sizeof(what), "%s n%d %d->%d L%d k%d s%d p%d", transposed ?
		 "conv_transpose1d" : "conv1d", n, ic, oc, len, k, transposed ? 2 : stride, pad);
	h_check(&h, y, want, ny, TOL, what);
	free(x), free(want);
}

static int reflect(int i, int n)
{
	return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

static void test_resample1d(int rows, int len, int up)
{
	static const float cubic[8] = { -0.01171875f, -0.03515625f, 0.11328125f, 0.43359375f,
					0.43359375f, 0.11328125f, -0.03515625f, -0.01171875f };
	harness h;
	float k[8], *x = rnd((size_t)rows * len, 1);
	int ol = up ? 2 * len : (len + 6 - 8) / 2 + 1;
	double *want = calloc((size_t)rows * ol, sizeof(double));
	char what[96];
	for (int i = 0; i < 8; i++)
		k[i] = cubic[i] * (up ? 2.0f : 1.0f);
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * len;
		if (!up) {
			for (int o = 0; o < ol; o++)
				for (int t = 0; t < 8; t++)
					want[(size_t)r * ol + o] += (double)k[t] * xr[reflect(2 * o + t - 3, len)];
		} else { /* torch: reflect pad 2, conv_transpose1d(stride 2, padding 7) */
			int lp = len + 4;
			for (int j = 0; j < lp; j++)
				for (int t = 0; t < 8; t++) {
					int o = 2 * j + t - 7;
					if (o >= 0 && o < ol)
						want[(size_t)r * ol + o] += (double)k[t] * xr[reflect(j - 2, len)];
				}
		}
	}
	h_init(&h);
	snprintf(what, sizeof(what), "cubic %s [1, %d, %d]", up ? "upsample1d" : "downsample1d", rows, len);
	h_check(&h, op_resample1d(h.g, h_input(&h, x, 3, (int64_t[]){ 1, rows, len }),
				  h_weight(&h, k, 8, 1, (int64_t[]){ 8 }), up), want, (size_t)rows * ol,
		TOL, what);
	free(x), free(want);
}

/* GroupNorm then act, then + a per-(n, c) bias and + a residual. */
static void test_group_norm_post(int n, int c, int len, int groups)
{
	harness h;
	size_t nx = (size_t)n * c * len;
	float *x = rnd(nx, 1), *pb = rnd((size_t)n * c, 1), *res = rnd(nx, 1);
	float *gm = rnd((size_t)c, 0.2f), *bt = rnd((size_t)c, 0.2f);
	double *want = malloc(nx * sizeof(double));
	int cpg = c / groups;
	char what[96];
	for (int b = 0; b < n; b++)
		for (int g = 0; g < groups; g++) {
			const float *xs = x + ((size_t)b * c + (size_t)g * cpg) * len;
			double mean = 0, var = 0;
			size_t span = (size_t)cpg * len;
			for (size_t i = 0; i < span; i++)
				mean += xs[i];
			mean /= (double)span;
			for (size_t i = 0; i < span; i++)
				var += (xs[i] - mean) * (xs[i] - mean);
			var /= (double)span;
			for (int cc = 0; cc < cpg; cc++) {
				int ch = g * cpg + cc;
				for (int j = 0; j < len; j++) {
					size_t at = ((size_t)b * c + ch) * len + j;
					double v = (x[at] - mean) / sqrt(var + 1e-5) * gm[ch] + bt[ch];
					want[at] = act_ref(v, CU_ACT_MISH) + pb[b * c + ch] + res[at];
				}
			}
		}
	h_init(&h);
	snprintf(what, sizeof(what), "group_norm+mish+bias+residual n%d c%d L%d g%d", n, c, len, groups);
	h_check(&h, op_group_norm_ex(h.g, h_input(&h, x, 3, (int64_t[]){ n, c, len }),
				     h_weight(&h, gm, (size_t)c, 1, (int64_t[]){ c }),
				     h_weight(&h, bt, (size_t)c, 1, (int64_t[]){ c }), groups, 1e-5f, -1,
				     CU_ACT_MISH, h_input(&h, pb, 2, (int64_t[]){ n, c }),
				     h_input(&h, res, 3, (int64_t[]){ n, c, len })), want, nx, TOL, what);
	free(x), free(pb), free(res), free(gm), free(bt), free(want);
}

static void test_repeat(int n, int c, int len)
{
	harness h;
	float *x = rnd((size_t)n * c, 1);
	double *want = malloc((size_t)n * c * len * sizeof(double));
	char what[64];
	for (int r = 0; r < n * c; r++)
		for (int l = 0; l < len; l++)
			want[(size_t)r * len + l] = x[r];
	h_init(&h);
	snprintf(what, sizeof(what), "repeat [%d, %d] along %d", n, c, len);
	h_check(&h, op_repeat_len(h.g, h_input(&h, x, 2, (int64_t[]){ n, c }), len), want,
		(size_t)n * c * len, 0, what);
	free(x), free(want);
}

/* diffusers' SelfAttention1d: GroupNorm(1, C) -> query/key/value -> heads of
 * C / heads -> softmax(q k^T / sqrt(d)) v -> proj_attn -> + residual. */
static void test_attention1d(int n, int ch, int len, int heads)
{
	harness h;
	nn_ctx c;
	nn_attn_cfg a;
	int d = ch / heads;
	size_t nx = (size_t)n * ch * len;
	float *x = rnd(nx, 1);
	double *hn = malloc(nx * sizeof(double)), *q = malloc(nx * sizeof(double));
	double *k = malloc(nx * sizeof(double)), *v = malloc(nx * sizeof(double));
	double *o = calloc(nx, sizeof(double)), *want = malloc(nx * sizeof(double));
	double *s = malloc((size_t)len * sizeof(double));
	char what[96];
	/* GroupNorm with one group, the store's weights */
	for (int b = 0; b < n; b++) {
		double mean = 0, var = 0;
		const float *xb = x + (size_t)b * ch * len;
		for (size_t i = 0; i < (size_t)ch * len; i++)
			mean += xb[i];
		mean /= (double)ch * len;
		for (size_t i = 0; i < (size_t)ch * len; i++)
			var += (xb[i] - mean) * (xb[i] - mean);
		var /= (double)ch * len;
		for (int cc = 0; cc < ch; cc++)
			for (int l = 0; l < len; l++)
				hn[((size_t)b * ch + cc) * len + l] =
					(xb[cc * len + l] - mean) / sqrt(var + 1e-5) * tw("a.group_norm.weight", cc) +
					tw("a.group_norm.bias", cc);
	}
	for (int b = 0; b < n; b++)
		for (int oc = 0; oc < ch; oc++)
			for (int l = 0; l < len; l++) {
				double aq = tw("a.query.bias", oc), ak = tw("a.key.bias", oc), av = tw("a.value.bias", oc);
				for (int ic = 0; ic < ch; ic++) {
					double hv = hn[((size_t)b * ch + ic) * len + l];
					aq += tw("a.query.weight", (size_t)oc * ch + ic) * hv;
					ak += tw("a.key.weight", (size_t)oc * ch + ic) * hv;
					av += tw("a.value.weight", (size_t)oc * ch + ic) * hv;
				}
				q[((size_t)b * ch + oc) * len + l] = aq;
				k[((size_t)b * ch + oc) * len + l] = ak;
				v[((size_t)b * ch + oc) * len + l] = av;
			}
	for (int b = 0; b < n; b++)
		for (int hh = 0; hh < heads; hh++)
			for (int i = 0; i < len; i++) {
				double m = -INFINITY, sum = 0;
				for (int j = 0; j < len; j++) {
					double dot = 0;
					for (int e = 0; e < d; e++)
						dot += q[((size_t)b * ch + hh * d + e) * len + i] *
						       k[((size_t)b * ch + hh * d + e) * len + j];
					s[j] = dot / sqrt((double)d);
					m = fmax(m, s[j]);
				}
				for (int j = 0; j < len; j++)
					sum += (s[j] = exp(s[j] - m));
				for (int e = 0; e < d; e++) {
					double acc = 0;
					for (int j = 0; j < len; j++)
						acc += s[j] / sum * v[((size_t)b * ch + hh * d + e) * len + j];
					o[((size_t)b * ch + hh * d + e) * len + i] = acc;
				}
			}
	for (int b = 0; b < n; b++)
		for (int oc = 0; oc < ch; oc++)
			for (int l = 0; l < len; l++) {
				double acc = tw("a.proj_attn.bias", oc);
				for (int ic = 0; ic < ch; ic++)
					acc += tw("a.proj_attn.weight", (size_t)oc * ch + ic) *
					       o[((size_t)b * ch + ic) * len + l];
				want[((size_t)b * ch + oc) * len + l] = acc + x[((size_t)b * ch + oc) * len + l];
			}
	nn_begin(&h, &c);
	memset(&a, 0, sizeof(a));
	a.channels = ch;
	a.heads = heads;
	a.dim_head = d;
	a.groups = 1;
	a.eps = 1e-5f;
	a.rescale = 1.0f;
	a.residual = 1;
	a.names_1d = 1;
	snprintf(what, sizeof(what), "self-attention 1d n%d c%d L%d heads %d", n, ch, len, heads);
	h_check(&h, nn_spatial_attention(&c, "a", h_input(&h, x, 3, (int64_t[]){ n, ch, len }), &a),
		want, nx, 1e-5, what);
	free(x), free(hn), free(q), free(k), free(v), free(o), free(want), free(s);
}

/* The fused attention kernel against a plain softmax(q k^T / sqrt(d)) v,
 * into an output whose rows are yp >= lq apart (op_attention_fused_into:
 * zeros past lq); q of standard deviation qs (large: scores hundreds apart,
 * weights that underflow). */
static void test_attention_fused_p(int bh, int d, int lq, int lk, int yp, float qs)
{
	harness h;
	float *q = rnd((size_t)bh * d * lq, qs), *k = rnd((size_t)bh * d * lk, 1);
	float *v = rnd((size_t)bh * d * lk, 1);
	double *want = calloc((size_t)bh * d * yp, sizeof(double)), *s = malloc((size_t)lk * sizeof(double));
	double scale = 1.0 / sqrt((double)d);
	char what[160];
	int qt, kt, vt, y;
	for (int b = 0; b < bh; b++)
		for (int i = 0; i < lq; i++) {
			double m = -INFINITY, sum = 0;
			for (int j = 0; j < lk; j++) {
				double dot = 0;
				for (int e = 0; e < d; e++)
					dot += (double)q[((size_t)b * d + e) * lq + i] * k[((size_t)b * d + e) * lk + j];
				s[j] = dot * (double)(float)scale;
				m = fmax(m, s[j]);
			}
			for (int j = 0; j < lk; j++)
				sum += (s[j] = exp(s[j] - m));
			for (int e = 0; e < d; e++) {
				double acc = 0;
				for (int j = 0; j < lk; j++)
					acc += s[j] / sum * v[((size_t)b * d + e) * lk + j];
				want[((size_t)b * d + e) * yp + i] = acc;
			}
		}
	h_init(&h);
	snprintf(what, sizeof(what), "attention_fused bh%d d%d lq%d lk%d", bh, d, lq, lk);
	if (qs != 1.0f)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), " q x%g", qs);
	if (yp != lq)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), " rows %d apart", yp);
	snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s", forced_note());
	qt = h_input(&h, q, 1, (int64_t[]){ (int64_t)bh * d * lq });
	kt = h_input(&h, k, 1, (int64_t[]){ (int64_t)bh * d * lk });
	vt = h_input(&h, v, 1, (int64_t[]){ (int64_t)bh * d * lk });
	if (yp == lq)
		y = op_attention_fused(h.g, qt, kt, vt, -1, 1, bh, d, lq, lk, (float)scale, 3,
				       (int64_t[]){ bh, d, lq });
	else {
		/* an output whose rows are closer than lq: a named error */
		cu_graph *g = cu_graph_new(rt);
		int gq = cu_graph_input(g, 0, CU_F32, 1, (int64_t[]){ (int64_t)bh * d * lq });
		int gk = cu_graph_input(g, 1, CU_F32, 1, (int64_t[]){ (int64_t)bh * d * lk });
		int gv = cu_graph_input(g, 2, CU_F32, 1, (int64_t[]){ (int64_t)bh * d * lk });
		CHECK(op_attention_fused_into(g, gq, gk, gv, -1, 1, bh, d, lq, lk, (float)scale,
					      cu_graph_act(g, 3, (int64_t[]){ bh, d, lq - 1 }),
					      lq - 1) < 0 &&
			      strstr(clunet_last_error(), "queries"),
		      "attention_fused_into: rows %d apart for %d queries were not refused (%s)",
		      lq - 1, lq, clunet_last_error());
		cu_graph_free(g);
		y = op_attention_fused_into(h.g, qt, kt, vt, -1, 1, bh, d, lq, lk, (float)scale,
					    cu_graph_act(h.g, 3, (int64_t[]){ bh, d, yp }), yp);
	}
	h_check(&h, y, want, (size_t)bh * d * yp, 1e-5, what);
	free(q), free(k), free(v), free(want), free(s);
}

static void test_attention_fused(int bh, int d, int lq, int lk)
{
	test_attention_fused_p(bh, d, lq, lk, lq, 1.0f);
}

/* ------------------------------------------------------------ layer norm, softmax bias */

/* LayerNorm over the channels of [n, c, p] (nd 2: [n, c]; nd 3: [n, c, p];
 * nd 4: [n, c, p / ww, ww]) with gamma/beta. */
static void test_layer_norm(int n, int c, int p, int nd, int ww, float eps)
{
	harness h;
	size_t nx = (size_t)n * c * p;
	float *x = rnd(nx, 2), *gm = rnd((size_t)c, 0.3f), *bt = rnd((size_t)c, 0.3f);
	double *want = malloc(nx * sizeof(double));
	int64_t ne[4] = { n, c, nd == 4 ? p / ww : p, ww };
	char what[128], s[96];
	int xt;
	for (int i = 0; i < c; i++)
		gm[i] += 1.0f;
	for (int b = 0; b < n; b++)
		for (int q = 0; q < p; q++) {
			double mean = 0, var = 0;
			for (int ch = 0; ch < c; ch++)
				mean += x[((size_t)b * c + ch) * p + q];
			mean /= c;
			for (int ch = 0; ch < c; ch++) {
				double d = x[((size_t)b * c + ch) * p + q] - mean;
				var += d * d;
			}
			var /= c;
			for (int ch = 0; ch < c; ch++) {
				size_t at = ((size_t)b * c + ch) * p + q;
				want[at] = (x[at] - mean) / sqrt(var + eps) * gm[ch] + bt[ch];
			}
		}
	h_init(&h);
	xt = h_input(&h, x, nd, ne);
	snprintf(what, sizeof(what), "layer_norm %s eps %g", cu_shape_str(cu_t(h.g, xt), s, sizeof(s)),
		 eps);
	h_check(&h, op_layer_norm(h.g, xt, h_weight(&h, gm, (size_t)c, 1, (int64_t[]){ c }),
				  h_weight(&h, bt, (size_t)c, 1, (int64_t[]){ c }), eps),
		want, nx, TOL, what);
	free(x), free(gm), free(bt), free(want);
}

/* Softmax of x [rows, cols] + bias[r / rpi][cols], the bias a mask of 0 or
 * -10000 (diffusers' (1 - m) * -10000) plus a small random part. */
static void test_softmax_bias(int rows, int cols, int rpi)
{
	harness h;
	int items = rows / rpi;
	float *x = rnd((size_t)rows * cols, 3), *bias = rnd((size_t)items * cols, 0.5f);
	double *want = malloc((size_t)rows * cols * sizeof(double));
	char what[96];
	for (int i = 0; i < items; i++)
		for (int j = 1; j < cols; j++) /* key 0 always kept */
			if (cu_rng_uniform(&rng) < 0.3f)
				bias[(size_t)i * cols + j] -= 10000.0f;
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * cols, *br = bias + (size_t)(r / rpi) * cols;
		double m = -INFINITY, sum = 0;
		for (int j = 0; j < cols; j++)
			m = fmax(m, (double)xr[j] + br[j]);
		for (int j = 0; j < cols; j++)
			sum += exp((double)xr[j] + br[j] - m);
		for (int j = 0; j < cols; j++)
			want[(size_t)r * cols + j] = exp((double)xr[j] + br[j] - m) / sum;
	}
	h_init(&h);
	snprintf(what, sizeof(what), "softmax_bias %dx%d, %d rows per item", rows, cols, rpi);
	h_check(&h, op_softmax_bias(h.g, h_input(&h, x, 2, (int64_t[]){ rows, cols }),
				    h_input(&h, bias, 2, (int64_t[]){ items, cols }), rpi),
		want, (size_t)rows * cols, TOL, what);
	free(x), free(bias), free(want);
}

/* ------------------------------------------------------------ more elementwise */

/* GEGLU of [n, 2f, p] (nd 2: [n, 2f]; nd 4: [n, 2f, p / ww, ww]). */
static void test_geglu(int n, int f, int p, int nd, int ww)
{
	harness h;
	size_t ny = (size_t)n * f * p;
	float *x = rnd(2 * ny, 1.5f);
	double *want = malloc(ny * sizeof(double));
	int64_t ne[4] = { n, 2 * f, nd == 4 ? p / ww : p, ww };
	char what[96], s[96];
	int xt;
	for (int b = 0; b < n; b++)
		for (int c = 0; c < f; c++)
			for (int q = 0; q < p; q++) {
				const float *xb = x + (size_t)b * 2 * f * p;
				want[((size_t)b * f + c) * p + q] =
					(double)xb[(size_t)c * p + q] *
					act_ref(xb[(size_t)(f + c) * p + q], CU_ACT_GELU);
			}
	h_init(&h);
	xt = h_input(&h, x, nd, ne);
	snprintf(what, sizeof(what), "geglu %s", cu_shape_str(cu_t(h.g, xt), s, sizeof(s)));
	h_check(&h, op_geglu(h.g, xt), want, ny, TOL, what);
	free(x), free(want);
}

/* mean over the last dimension of [a, b, len] (a = 0: [b, len]) */
static void test_mean_last(int a, int b, int len)
{
	harness h;
	int rows = (a ? a : 1) * b;
	float *x = rnd((size_t)rows * len, 1);
	double *want = malloc((size_t)rows * sizeof(double));
	char what[96];
	for (int r = 0; r < rows; r++) {
		double s = 0;
		for (int j = 0; j < len; j++)
			s += x[(size_t)r * len + j];
		want[r] = s / len;
	}
	h_init(&h);
	if (a)
		snprintf(what, sizeof(what), "mean_last [%d, %d, %d]", a, b, len);
	else
		snprintf(what, sizeof(what), "mean_last [%d, %d]", b, len);
	h_check(&h, op_mean_last(h.g, a ? h_input(&h, x, 3, (int64_t[]){ a, b, len })
					: h_input(&h, x, 2, (int64_t[]){ b, len })),
		want, (size_t)rows, TOL, what);
	free(x), free(want);
}

/* [a, b, la] + [a, b, lb] along the last dimension */
static void test_concat_last(int a, int b, int la, int lb)
{
	harness h;
	int rows = a * b;
	float *x = rnd((size_t)rows * la, 1), *z = rnd((size_t)rows * lb, 1);
	double *want = malloc((size_t)rows * (la + lb) * sizeof(double));
	char what[96];
	for (int r = 0; r < rows; r++)
		for (int j = 0; j < la + lb; j++)
			want[(size_t)r * (la + lb) + j] =
				j < la ? x[(size_t)r * la + j] : z[(size_t)r * lb + j - la];
	h_init(&h);
	snprintf(what, sizeof(what), "concat_last [%d, %d, %d] + [%d, %d, %d]", a, b, la, a, b, lb);
	h_check(&h, op_concat_last(h.g, h_input(&h, x, 3, (int64_t[]){ a, b, la }),
				   h_input(&h, z, 3, (int64_t[]){ a, b, lb })),
		want, (size_t)rows * (la + lb), 0, what);
	free(x), free(z), free(want);
}

static void test_transpose(int batch, int rows, int cols)
{
	harness h;
	size_t n = (size_t)batch * rows * cols;
	float *x = rnd(n, 1);
	double *want = malloc(n * sizeof(double));
	char what[96];
	for (int b = 0; b < batch; b++)
		for (int r = 0; r < rows; r++)
			for (int c = 0; c < cols; c++)
				want[((size_t)b * cols + c) * rows + r] = x[((size_t)b * rows + r) * cols + c];
	h_init(&h);
	snprintf(what, sizeof(what), "transpose [%d, %d, %d]", batch, rows, cols);
	h_check(&h, op_transpose(h.g, h_input(&h, x, 1, (int64_t[]){ (int64_t)n }), batch, rows, cols),
		want, n, 0, what);
	free(x), free(want);
}

/* channels [c0, c0 + nc) of [n, c, p] (nd 2: [n, c]; nd 4: [n, c, p / ww, ww]) */
static void test_slice_channels(int n, int c, int p, int nd, int ww, int c0, int nc)
{
	harness h;
	size_t ny = (size_t)n * nc * p;
	float *x = rnd((size_t)n * c * p, 1);
	double *want = malloc(ny * sizeof(double));
	int64_t ne[4] = { n, c, nd == 4 ? p / ww : p, ww };
	char what[96], s[96];
	int xt;
	for (int b = 0; b < n; b++)
		for (int k = 0; k < nc; k++)
			for (int q = 0; q < p; q++)
				want[((size_t)b * nc + k) * p + q] = x[((size_t)b * c + c0 + k) * p + q];
	h_init(&h);
	xt = h_input(&h, x, nd, ne);
	snprintf(what, sizeof(what), "slice_channels %s [%d, %d)",
		 cu_shape_str(cu_t(h.g, xt), s, sizeof(s)), c0, c0 + nc);
	h_check(&h, op_slice_channels(h.g, xt, c0, nc), want, ny, 0, what);
	free(x), free(want);
}

/* ------------------------------------------------------------ masked fused attention */

/* softmax(scale q k^T + mask[b / heads]) v for n items of `heads` heads: the
 * mask is 0 or -10000 per key plus a small random part, different per item,
 * so the kernel must pick the item's row by b / heads. */
static void test_attention_fused_mask(int n, int heads, int d, int lq, int lk)
{
	harness h;
	int bh = n * heads;
	float *q = rnd((size_t)bh * d * lq, 1), *k = rnd((size_t)bh * d * lk, 1);
	float *v = rnd((size_t)bh * d * lk, 1), *mask = rnd((size_t)n * lk, 0.5f);
	double *want = malloc((size_t)bh * d * lq * sizeof(double)), *s = malloc((size_t)lk * sizeof(double));
	double scale = 1.0 / sqrt((double)d);
	char what[160];
	for (int i = 0; i < n; i++)
		for (int j = 0; j < lk; j++) /* every item keeps a different key */
			if (j != i % lk && cu_rng_uniform(&rng) < 0.35f)
				mask[(size_t)i * lk + j] -= 10000.0f;
	for (int b = 0; b < bh; b++)
		for (int i = 0; i < lq; i++) {
			double m = -INFINITY, sum = 0;
			for (int j = 0; j < lk; j++) {
				double dot = 0;
				for (int e = 0; e < d; e++)
					dot += (double)q[((size_t)b * d + e) * lq + i] * k[((size_t)b * d + e) * lk + j];
				s[j] = dot * (double)(float)scale + mask[(size_t)(b / heads) * lk + j];
				m = fmax(m, s[j]);
			}
			for (int j = 0; j < lk; j++)
				sum += (s[j] = exp(s[j] - m));
			for (int e = 0; e < d; e++) {
				double acc = 0;
				for (int j = 0; j < lk; j++)
					acc += s[j] / sum * v[((size_t)b * d + e) * lk + j];
				want[((size_t)b * d + e) * lq + i] = acc;
			}
		}
	h_init(&h);
	snprintf(what, sizeof(what), "attention_fused masked n%d heads %d d%d lq%d lk%d%s", n, heads,
		 d, lq, lk, forced_note());
	h_check(&h, op_attention_fused(h.g, h_input(&h, q, 1, (int64_t[]){ (int64_t)bh * d * lq }),
				       h_input(&h, k, 1, (int64_t[]){ (int64_t)bh * d * lk }),
				       h_input(&h, v, 1, (int64_t[]){ (int64_t)bh * d * lk }),
				       h_input(&h, mask, 2, (int64_t[]){ n, lk }), heads, bh, d, lq, lk,
				       (float)scale, 3, (int64_t[]){ bh, d, lq }),
		want, (size_t)bh * d * lq, 1e-5, what);
	free(q), free(k), free(v), free(mask), free(want), free(s);
}

/* ------------------------------------------------------------ FreeU */

/* x [n, c, p] (nd 2: [n, c]; nd 4: [n, c, p / ww, ww]) with the first nch
 * channels of every item times f */
static void test_scale_channels(int n, int c, int p, int nd, int ww, int nch, float f)
{
	harness h;
	size_t nx = (size_t)n * c * p;
	float *x = rnd(nx, 1);
	double *want = malloc(nx * sizeof(double));
	int64_t ne[4] = { n, c, nd == 4 ? p / ww : p, ww };
	char what[96], s[96];
	int xt;
	for (size_t i = 0; i < nx; i++)
		want[i] = (int)(i / (size_t)p % (size_t)c) < nch ? (double)x[i] * f : x[i];
	h_init(&h);
	xt = h_input(&h, x, nd, ne);
	snprintf(what, sizeof(what), "scale_channels %s first %d x %g",
		 cu_shape_str(cu_t(h.g, xt), s, sizeof(s)), nch, f);
	h_check(&h, op_scale_channels(h.g, xt, nch, f), want, nx, TOL, what);
	free(x), free(want);
}

/* Python's slice start: a negative start counts from the end, then clamps at 0. */
static int py_slice_start(int v, int n)
{
	if (v < 0)
		v += n;
	return v < 0 ? 0 : v > n ? n : v;
}

static int py_slice_stop(int v, int n)
{
	if (v < 0)
		v += n;
	return v < 0 ? 0 : v > n ? n : v;
}

/* diffusers' fourier_filter on `planes` planes of h x w: X = fftshift(fft2(x));
 * X[crow - t : crow + t, ccol - t : ccol + t] *= scale (Python slices);
 * y = real(ifft2(ifftshift(X))). A naive DFT in double. */
static void freeu_ref(const float *x, int planes, int hh, int ww, double scale, int t, double *y)
{
	size_t n = (size_t)hh * ww;
	double *xr = malloc(n * sizeof(double)), *xi = malloc(n * sizeof(double));
	double *sr = malloc(n * sizeof(double)), *si = malloc(n * sizeof(double));
	double *ch = malloc((size_t)hh * sizeof(double)), *sh = malloc((size_t)hh * sizeof(double));
	double *cw = malloc((size_t)ww * sizeof(double)), *sw = malloc((size_t)ww * sizeof(double));
	const double tau = 6.283185307179586476925286766559;
	int crow = hh / 2, ccol = ww / 2;
	int y0 = py_slice_start(crow - t, hh), y1 = py_slice_stop(crow + t, hh);
	int x0 = py_slice_start(ccol - t, ww), x1 = py_slice_stop(ccol + t, ww);
	for (int i = 0; i < hh; i++) { /* e^{2 pi i m / h} for m = (k i) mod h */
		ch[i] = cos(tau * i / hh);
		sh[i] = sin(tau * i / hh);
	}
	for (int i = 0; i < ww; i++) {
		cw[i] = cos(tau * i / ww);
		sw[i] = sin(tau * i / ww);
	}
	for (int pl = 0; pl < planes; pl++) {
		const float *xp = x + (size_t)pl * n;
		double *yp = y + (size_t)pl * n;
		/* the spectrum X[ky][kx] = sum x e^{-2 pi i (ky iy / h + kx ix / w)} */
		for (int ky = 0; ky < hh; ky++)
			for (int kx = 0; kx < ww; kx++) {
				double re = 0, im = 0;
				for (int iy = 0; iy < hh; iy++)
					for (int ix = 0; ix < ww; ix++) {
						int a = ky * iy % hh, b = kx * ix % ww;
						double c = ch[a] * cw[b] - sh[a] * sw[b];
						double s = sh[a] * cw[b] + ch[a] * sw[b];
						re += xp[iy * ww + ix] * c;
						im -= xp[iy * ww + ix] * s;
					}
				xr[ky * ww + kx] = re;
				xi[ky * ww + kx] = im;
			}
		/* fftshift: shifted[i] = X[(i - n / 2) mod n] along both axes */
		for (int sy = 0; sy < hh; sy++)
			for (int sx = 0; sx < ww; sx++) {
				int ky = ((sy - hh / 2) % hh + hh) % hh, kx = ((sx - ww / 2) % ww + ww) % ww;
				sr[sy * ww + sx] = xr[ky * ww + kx];
				si[sy * ww + sx] = xi[ky * ww + kx];
			}
		for (int sy = y0; sy < y1; sy++)
			for (int sx = x0; sx < x1; sx++) {
				sr[sy * ww + sx] *= scale;
				si[sy * ww + sx] *= scale;
			}
		/* ifftshift: X[k] = shifted[(k + n / 2) mod n] */
		for (int ky = 0; ky < hh; ky++)
			for (int kx = 0; kx < ww; kx++) {
				int sy = (ky + hh / 2) % hh, sx = (kx + ww / 2) % ww;
				xr[ky * ww + kx] = sr[sy * ww + sx];
				xi[ky * ww + kx] = si[sy * ww + sx];
			}
		/* y = Re(1/(hw) sum X[k] e^{+2 pi i (ky iy / h + kx ix / w)}) */
		for (int iy = 0; iy < hh; iy++)
			for (int ix = 0; ix < ww; ix++) {
				double re = 0;
				for (int ky = 0; ky < hh; ky++)
					for (int kx = 0; kx < ww; kx++) {
						int a = ky * iy % hh, b = kx * ix % ww;
						double c = ch[a] * cw[b] - sh[a] * sw[b];
						double s = sh[a] * cw[b] + ch[a] * sw[b];
						re += xr[ky * ww + kx] * c - xi[ky * ww + kx] * s;
					}
				yp[iy * ww + ix] = re / (double)n;
			}
	}
	free(xr), free(xi), free(sr), free(si), free(ch), free(sh), free(cw), free(sw);
}

static void test_freeu_filter(int n, int c, int hh, int ww, float scale, int t, int use_fft)
{
	harness h;
	size_t nx = (size_t)n * c * hh * ww;
	float *x = rnd(nx, 1);
	double *want = malloc(nx * sizeof(double));
	char what[96];
	freeu_ref(x, n * c, hh, ww, scale, t, want);
	h_init(&h);
	snprintf(what, sizeof(what), "freeu_filter %s [%d, %d, %d, %d] threshold %d scale %g",
		 use_fft ? "clFFT" : "direct", n, c, hh, ww, t, scale);
	h_check(&h, op_freeu_filter(h.g, h_input(&h, x, 4, (int64_t[]){ n, c, hh, ww }), scale, t,
				    use_fft),
		want, nx, TOL, what);
	free(x), free(want);
}

/* A filter the builder must refuse: the op returns -1, the graph keeps `expect`. */
static void test_freeu_rejected(int hh, int ww, int t, int use_fft, clunet_status expect)
{
	harness h;
	int y;
	char what[96];
	h_init(&h);
	y = op_freeu_filter(h.g, cu_graph_input(h.g, 0, CU_F32, 4, (int64_t[]){ 1, 3, hh, ww }), 0.5f,
			    t, use_fft);
	snprintf(what, sizeof(what), "freeu_filter %s %dx%d threshold %d refused",
		 use_fft ? "clFFT" : "direct", hh, ww, t);
	printf("  %-58s %s\n", what, clunet_status_name(h.g->status));
	CHECK(y < 0 && h.g->status == expect, "%s: op returned %d, graph status %s, expected %s", what,
	      y, clunet_status_name(h.g->status), clunet_status_name(expect));
	cu_graph_free(h.g);
}

/* ------------------------------------------------------------ GEMMs into views */

static void gemm_ref(const float *a, const float *b, const gemm_args *g, double *c)
{
	for (int q = 0; q < g->batch; q++)
		for (int i = 0; i < g->m; i++)
			for (int j = 0; j < g->n; j++) {
				double acc = 0;
				for (int l = 0; l < g->k; l++) {
					double av = g->trans_a ? a[q * g->stride_a + (long)l * g->lda + i]
							       : a[q * g->stride_a + (long)i * g->lda + l];
					double bv = g->trans_b ? b[q * g->stride_b + (long)j * g->ldb + l]
							       : b[q * g->stride_b + (long)l * g->ldb + j];
					acc += av * bv;
				}
				c[q * g->stride_c + (long)i * g->ldc + j] = g->alpha * acc;
			}
}

static void gemm_dense(gemm_args *g, int ta, int tb, int m, int n, int k, int batch, float alpha)
{
	memset(g, 0, sizeof(*g));
	g->trans_a = ta;
	g->trans_b = tb;
	g->m = m;
	g->n = n;
	g->k = k;
	g->lda = ta ? m : k;
	g->ldb = tb ? k : n;
	g->ldc = n;
	g->stride_a = (long)m * k;
	g->stride_b = (long)k * n;
	g->stride_c = (long)m * n;
	g->batch = batch;
	g->alpha = alpha;
}

/* Two GEMMs (the second with other transposes and alpha) into the two halves
 * of one [2, batch, m, n] tensor made with cu_graph_act; the whole tensor is
 * the output. cols: the halves are the two column halves of [batch, m, 2n]
 * instead (ldc 2n, the second view starting n elements in). */
static void test_gemm_views(int m, int n, int k, int batch, int cols)
{
	harness h;
	size_t na = (size_t)batch * m * k, nb = (size_t)batch * k * n, nc = (size_t)batch * m * n;
	float *a0 = rnd(na, 1), *b0 = rnd(nb, 1), *a1 = rnd(na, 1), *b1 = rnd(nb, 1);
	double *want = malloc(2 * nc * sizeof(double));
	gemm_args g0, g1;
	char what[128];
	int o, v0, v1;
	gemm_dense(&g0, 0, 0, m, n, k, batch, 1.0f);
	gemm_dense(&g1, 1, 1, m, n, k, batch, -0.5f);
	if (cols) {
		g0.ldc = g1.ldc = 2 * n;
		g0.stride_c = g1.stride_c = (long)m * 2 * n;
	}
	gemm_ref(a0, b0, &g0, want);
	gemm_ref(a1, b1, &g1, want + (cols ? n : (long)nc));
	h_init(&h);
	{
		int xa0 = h_input(&h, a0, 1, (int64_t[]){ (int64_t)na });
		int xb0 = h_input(&h, b0, 1, (int64_t[]){ (int64_t)nb });
		int xa1 = h_input(&h, a1, 1, (int64_t[]){ (int64_t)na });
		int xb1 = h_input(&h, b1, 1, (int64_t[]){ (int64_t)nb });
		if (cols) {
			/* each view spans from its first to its last element */
			int64_t span = 2 * (int64_t)nc - n;
			o = cu_graph_act(h.g, 3, (int64_t[]){ batch, m, 2 * n });
			v0 = cu_view(h.g, o, 0, 1, &span);
			v1 = cu_view(h.g, o, n, 1, &span);
		} else {
			o = cu_graph_act(h.g, 4, (int64_t[]){ 2, batch, m, n });
			v0 = cu_view(h.g, o, 0, 3, (int64_t[]){ batch, m, n });
			v1 = cu_view(h.g, o, (int64_t)nc, 3, (int64_t[]){ batch, m, n });
		}
		op_gemm_into(h.g, xa0, xb0, &g0, v0);
		op_gemm_into(h.g, xa1, xb1, &g1, v1);
	}
	snprintf(what, sizeof(what), "gemm_into NN + TT, %s halves of a tensor, %dx%dx%d batch %d",
		 cols ? "column" : "two", m, n, k, batch);
	h_check(&h, o, want, 2 * nc, TOL, what);
	free(a0), free(b0), free(a1), free(b1), free(want);
}

/* ------------------------------------------------------------ tuner */

/* An op whose candidates are y = x + beta: "beta=0" equals the default,
 * "beta=0.001" does not and must be rejected by the tuner's check. */
static clunet_status fake_prepare(cu_plan *p, cu_op *op)
{
	int n = (int)cu_numel(cu_t(p->g, op->out));
	const char *v = cu_op_variant(p, op);
	double beta = strstr(v, "beta=0.001") ? 0.001 : 0.0;
	clunet_status st = cu_op_kernel(p, op, "ewise.cl", "-cl-std=CL1.2", "affine_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiff", op->in[0], op->out, n, 1.0, beta);
	cu_op_range(op, 1, (size_t)n, 1, 1);
	return st;
}

static int fake_key(const cu_plan *p, const cu_op *op, char *buf, size_t cap)
{
	(void)p;
	(void)op;
	snprintf(buf, cap, "test_fake_op");
	return 1;
}

static int fake_variant(const cu_plan *p, const cu_op *op, int i, char *buf, size_t cap)
{
	(void)p;
	(void)op;
	if (i < 0 || i > 1)
		return 0;
	snprintf(buf, cap, "%s", i ? "beta=0" : "beta=0.001");
	return 1;
}

static const cu_op_impl fake_impl = { .kind = "fake", .prepare = fake_prepare,
				      .tune_key = fake_key, .variant = fake_variant };

static void test_tuner_rejects_wrong(void)
{
	clunet_context_options o;
	rt_ctx *trt = NULL;
	char *cache = tu_tempdir("tune-ops");
	float *x = rnd(1000, 1);
	cu_graph *g;
	cu_plan *p = NULL;
	cu_tune_stats stats;
	const void *inputs[1] = { x };
	int xt, y;
	clunet_context_options_init(&o);
	o.cache_dir = cache;
	o.profiling = 1;
	o.log = tu_log;
	if (clunet_context_create(&o, &trt) != CLUNET_OK) {
		CHECK(0, "context: %s", clunet_last_error());
		goto out;
	}
	g = cu_graph_new(trt);
	xt = cu_graph_input(g, 0, CU_F32, 1, (int64_t[]){ 1000 });
	y = cu_graph_act(g, 1, (int64_t[]){ 1000 });
	cu_graph_op(g, &fake_impl, &xt, 1, y);
	cu_graph_set_output(g, y);
	if (cu_plan_create(g, &p) != CLUNET_OK) {
		CHECK(0, "plan: %s", clunet_last_error());
		cu_graph_free(g);
		goto out;
	}
	CHECK(cu_plan_tune(p, inputs, 2, 0, NULL, NULL, &stats) == CLUNET_OK, "tune: %s",
	      clunet_last_error());
	CHECK(stats.keys == 1 && stats.candidates == 2 && stats.rejected == 1,
	      "tuner: %d keys, %d candidates, %d rejected (want 1, 2, 1)", stats.keys,
	      stats.candidates, stats.rejected);
	{
		const char *v = rt_tune_get(trt, "test_fake_op");
		CHECK(v && strcmp(v, "beta=0.001") != 0, "tuner kept the wrong candidate (%s)",
		      v ? v : "nothing");
		printf("  tuner: wrong candidate rejected, kept '%s'\n", v ? v : "?");
	}
	cu_plan_free(p);
out:
	clunet_context_destroy(trt);
	tu_rmtree(cache);
	free(cache);
	free(x);
}

/* test_ops [conv|gemm]: everything, or only one family (the suites that force
 * one implementation, CLUNET_CONV=... or CLUNET_GEMM=..., run only what it
 * changes) */
int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	const int all = !only, conv = all || !strcmp(only, "conv"), gemm = all || !strcmp(only, "gemm");
	clunet_context_options o;
	char *cache = tu_tempdir("ops-cache");
	clunet_context_options_init(&o);
	o.cache_dir = cache;
	o.log = tu_log;
	if (clunet_context_create(&o, &rt) != CLUNET_OK) {
		printf("cannot create a context: %s\n", clunet_last_error());
		return 1;
	}
	printf("device: %s (%s kernels)\n", rt->info.name, rt->is_cpu ? "CPU-shaped" : "GPU-shaped");
	cu_rng_seed(&rng, 20261122);

	if (conv) {
		tests_conv();
		tests_conv_geglu();
		tests_conv1x1_padded();
	}
	if (all)
		test_tuner_rejects_wrong();
	if (all) {
		test_group_norm(2, 12, 7, 5, 4, 1, 0, CU_ACT_SILU, 1e-5f);
		test_group_norm(1, 32, 1, 1, 32, 1, 0, CU_ACT_NONE, 1e-6f);
		test_group_norm(3, 20, 9, 11, 5, 0, 1, CU_ACT_MISH, 1e-5f);
		test_group_norm(1, 64, 33, 31, 32, 1, 0, CU_ACT_GELU, 1e-6f);
		test_group_norm(2, 6, 4, 4, 3, 1, 1, CU_ACT_RELU, 1e-5f);
		test_group_norm(1, 9, 101, 1, 3, 1, 0, CU_ACT_NONE, 1e-5f);
		test_group_norm(1, 4, 211, 199, 1, 0, 1, CU_ACT_SILU, 1e-5f); /* split form, scale-shift */
		test_softmax(7, 13, 1.0f);
		test_softmax(33, 256, 0.125f);
		test_softmax(1, 1, 1.0f);
		test_eltwise();
		test_concat(2, 3, 5, 7, 9);
		test_concat(1, 16, 1, 1, 1);
		test_resample();
		test_embeddings();
	}
	if (gemm) {
		test_gemm(1, 0, 37, 37, 9, 3, 0.333f);
		test_gemm(0, 1, 5, 65, 65, 2, 1.0f);
		test_gemm(0, 0, 16, 17, 31, 1, -2.0f);
		test_gemm(1, 1, 3, 4, 5, 7, 1.0f);
		test_gemm(0, 0, 9, 100, 7, 2, 1.0f);  /* ragged columns and rows, vector path */
		test_gemm(1, 0, 64, 64, 64, 1, 0.125f);
		test_gemm(0, 1, 33, 31, 17, 3, 1.0f); /* dot path with a ragged k */
		test_gemm(0, 1, 8, 64, 256, 2, 1.0f);
		test_gemm(0, 0, 131, 77, 45, 2, 1.0f);   /* several 64x64 blocks, ragged edges */
		test_gemm(1, 0, 70, 129, 33, 1, 0.5f);
		test_gemm(0, 1, 97, 65, 80, 2, 1.0f);
		test_gemm(1, 1, 66, 67, 19, 1, 1.0f);
		test_gemm_views(5, 7, 9, 1, 0);
		test_gemm_views(4, 33, 17, 3, 0);
		test_gemm_views(5, 7, 9, 2, 1);
		test_gemm_views(16, 37, 8, 1, 1);
	}

	if (conv) {
		test_conv1d(2, 3, 5, 37, 5, 1, 2, 0);
		test_conv1d(1, 17, 33, 61, 5, 2, 2, 0);   /* kernel 5, stride 2, odd length */
		test_conv1d(2, 16, 16, 33, 3, 2, 1, 0);   /* the RL Downsample1D */
		test_conv1d(1, 9, 70, 13, 1, 1, 0, 0);
		test_conv1d(2, 16, 16, 9, 4, 2, 1, 1);    /* ConvTranspose1d(4, 2, 1) */
		test_conv1d(1, 7, 33, 17, 4, 2, 1, 1);
	}
	if (all) {
		test_resample1d(5, 64, 0);
		test_resample1d(3, 37, 0);
		test_resample1d(5, 8, 1);
		test_resample1d(3, 37, 1);
		test_resample1d(2, 3, 1);                 /* the shortest row reflect padding allows */
		test_group_norm_post(2, 24, 37, 8);
		test_group_norm_post(1, 9, 129, 1);
		test_group_norm_post(1, 3, 40001, 1);     /* long single group: the split form */
		test_group_norm_post(2, 16, 9999, 2);
		test_repeat(2, 16, 37);
		test_attention1d(2, 64, 37, 2);
		test_attention1d(1, 32, 8, 1);
		test_attention1d(1, 96, 17, 3);
		/* on CPU-class devices: first the query-lane kernel wherever lq >= 16,
		 * then the key-vector kernel forced (CLUNET_ATTENTION_KERNEL=keys), then
		 * the blocked query-lane kernel with two query vectors a work-item
		 * (where lq >= 32: overlapping last tiles) */
		for (int pass = 0; pass < 3; pass++) {
			if (pass == 1)
				setenv("CLUNET_ATTENTION_KERNEL", "keys", 1);
			if (pass == 2) {
				unsetenv("CLUNET_ATTENTION_KERNEL");
				setenv("CLUNET_VARIANT", "attention_q:blk=1,qv=2", 1);
				test_attention_fused(1, 40, 64, 100);
			}
			test_attention_fused(2, 32, 37, 37);
			test_attention_fused(3, 40, 17, 77);   /* cross-attention shape, odd sizes */
			test_attention_fused(1, 64, 5, 3);
			test_attention_fused(2, 160, 9, 33);
			test_attention_fused(2, 160, 19, 33);  /* key blocks of 8 (large d) */
			test_attention_fused(1, 7, 64, 64);
			test_attention_fused(1, 40, 16, 5);    /* exactly one query tile, one ragged key block */
			/* output rows a pitch apart (query-lane, key-vector and generic kernels) */
			test_attention_fused_p(2, 40, 37, 77, 53, 1.0f);
			test_attention_fused_p(1, 64, 5, 3, 21, 1.0f);
			test_attention_fused_p(3, 7, 17, 9, 24, 1.0f);
			/* scores spread over hundreds: the exp's underflow and clamp */
			test_attention_fused_p(2, 40, 37, 77, 37, 40.0f);
			test_attention_fused_mask(2, 3, 8, 17, 77);  /* ragged key block */
			test_attention_fused_mask(3, 2, 7, 9, 33);   /* generic kernel (d not a multiple of 4) */
			test_attention_fused_mask(2, 4, 40, 37, 16); /* one full key block */
			test_attention_fused_mask(2, 1, 64, 5, 3);
			test_attention_fused_mask(1, 5, 13, 11, 1);  /* one key */
			test_attention_fused_mask(2, 2, 24, 33, 1);  /* one key, query lanes */
		}
		unsetenv("CLUNET_VARIANT");

		test_layer_norm(2, 5, 63, 4, 9, 1e-5f);     /* [2, 5, 7, 9]: vector blocks + ragged tail */
		test_layer_norm(3, 7, 1, 2, 1, 1e-5f);      /* [3, 7] */
		test_layer_norm(1, 33, 16, 3, 1, 1e-6f);    /* exactly one vector block */
		test_layer_norm(2, 320, 37, 3, 1, 1e-5f);
		test_layer_norm(1, 1, 5, 3, 1, 1e-5f);      /* one channel: beta only */
		test_softmax_bias(12, 13, 4);
		test_softmax_bias(10, 77, 5);
		test_softmax_bias(6, 33, 6);
		test_softmax_bias(1, 1, 1);
		test_geglu(2, 7, 15, 4, 5);                  /* [2, 14, 3, 5] */
		test_geglu(3, 9, 1, 2, 1);                   /* [3, 18] */
		test_geglu(1, 33, 37, 3, 1);
		test_mean_last(5, 7, 13);
		test_mean_last(0, 3, 1);
		test_mean_last(0, 2, 1001);
		test_concat_last(2, 3, 5, 7);
		test_concat_last(1, 4, 1, 9);
		test_concat_last(3, 1, 17, 1);
		test_transpose(3, 5, 7);
		test_transpose(1, 37, 1);
		test_transpose(2, 16, 33);
		test_slice_channels(2, 7, 15, 4, 5, 2, 3);   /* [2, 7, 3, 5] */
		test_slice_channels(3, 9, 1, 2, 1, 0, 9);    /* the whole [3, 9] */
		test_slice_channels(3, 9, 1, 2, 1, 8, 1);
		test_slice_channels(1, 5, 37, 3, 1, 4, 1);

		test_scale_channels(2, 5, 21, 4, 7, 3, 1.3f); /* [2, 5, 3, 7] */
		test_scale_channels(3, 4, 1, 2, 1, 4, -0.5f); /* [3, 4], all channels */
		test_scale_channels(1, 6, 9, 4, 9, 0, 2.0f);  /* none */
		test_scale_channels(2, 9, 17, 3, 1, 1, 0.9f);
		{
			static const int planes[][2] = { { 3, 4 }, { 6, 8 }, { 8, 8 }, { 1, 5 }, { 5, 1 },
							 { 2, 2 }, { 7, 9 }, { 1, 1 }, { 12, 10 }, { 16, 16 } };
			for (size_t i = 0; i < CU_ARRAY_LEN(planes); i++)
				test_freeu_filter(1, 3, planes[i][0], planes[i][1], 0.2f, 1, 0);
			test_freeu_filter(2, 3, 17, 13, 1.7f, 1, 0); /* lengths clFFT cannot do */
			for (size_t i = 0; i < CU_ARRAY_LEN(planes); i++)
				for (int t = 1; t <= 3; t++)
					test_freeu_filter(2, 2, planes[i][0], planes[i][1], t == 2 ? 1.6f : 0.3f, t, 1);
			test_freeu_filter(1, 3, 11, 13, 0.5f, 2, 1);
			test_freeu_rejected(8, 8, 2, 0, CLUNET_ERR_ARGUMENT);
			test_freeu_rejected(8, 8, 0, 1, CLUNET_ERR_ARGUMENT);
			test_freeu_rejected(17, 8, 1, 1, CLUNET_ERR_UNSUPPORTED);
			test_freeu_rejected(8, 17, 1, 1, CLUNET_ERR_UNSUPPORTED);
		}
	}
	nn_store_free(store);

	clunet_context_destroy(rt);
	tu_rmtree(cache);
	free(cache);
	return tu_finish("ops");
}
