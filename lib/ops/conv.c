/* Convolution over packed weights. Two direct kernels:
 *   conv_pv (cl/conv_pv.cl), CPU-class devices, stride 1 or 2: vectors along the
 *     output pixels over a padded copy of the input (pad2d, which also does
 *     the fused nearest/zero-insertion resampling), weight scalars
 *     broadcast from panels of CONV_PV_OCR output channels;
 *   conv2d (cl/conv2d.cl), every other case (GPU-class devices, strides > 2,
 *     linear layers over a handful of rows): vectors along the output
 *     channels, input scalars broadcast.
 * And the general path, im2col + GEMM (CLBlast on GPU-class devices, our
 * kernel on CPUs) + an epilogue, which only CLUNET_CONV=im2col chooses today
 * (it is slower than the direct kernels on every shape measured here).
 * CLUNET_CONV=pv|direct|im2col forces one where it applies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

enum { P_OC, P_KH, P_KW, P_S, P_PT, P_PL, P_PB, P_PR, P_UPS, P_ACT, P_OCT,
       /* conv_pv: the padded input's row pitch, plane size, output pixels over it */
       P_PW, P_CS, P_Q, P_PS, P_IC,
       /* conv_pv: GEGLU folded into the epilogue (P_OC is then half the weight's rows) */
       P_GEGLU };

enum { CONV_PV_OCR = 8, CONV_PV_PV = 3, CONV_PV_TILE = 16 * CONV_PV_PV };

/* The smallest power of two >= oc, at most CONV_PV_OCR. */
static int conv_panel_width_small(int oc)
{
	int oct = 1;
	while (oct < oc && oct < CONV_PV_OCR)
		oct *= 2;
	return oct;
}

/* conv_pv's panel width for packed weights: its default channel tile
 * (AVX-512-class: 8; AVX2-class, 16 vector registers: 4). */
static int conv_pv_panel(const rt_ctx *rt)
{
	return rt->vec_width >= 16 ? CONV_PV_OCR : 4;
}

int conv_panel_width(const rt_ctx *rt, int oc)
{
	int oct = 1;
	/* CPU-class: conv_pv's panels; a layer with fewer outputs (a model's
	 * conv_out with 3 or 4 channels) keeps a small panel and the channel-vector
	 * kernel rather than computing padding */
	if (rt->is_cpu && oc >= conv_pv_panel(rt))
		return conv_pv_panel(rt);
	if (rt->is_cpu) {
		while (oct < oc)
			oct *= 2;
		return oct;
	}
	if (oc >= 64)
		return 64;
	if (oc >= 16)
		return 16;
	while (oct < oc)
		oct *= 2;
	return oct;
}

size_t conv_packed_size(int oc, int ic, int kh, int kw, int oct)
{
	size_t nb = (size_t)(oc + oct - 1) / (size_t)oct;
	return nb * (size_t)oct * (size_t)ic * (size_t)kh * (size_t)kw;
}

typedef struct pack_job {
	const float *w;
	int oc, ic, kh, kw, oct;
	float *dst;
} pack_job;

static void pack_panels(void *ctx, size_t b0, size_t b1)
{
	const pack_job *j = ctx;
	size_t k = b0 * (size_t)j->oct * (size_t)j->ic * (size_t)j->kh * (size_t)j->kw;
	for (size_t b = b0; b < b1; b++)
		for (int c = 0; c < j->ic; c++)
			for (int y = 0; y < j->kh; y++)
				for (int x = 0; x < j->kw; x++)
					for (int t = 0; t < j->oct; t++) {
						size_t o = b * (size_t)j->oct + (size_t)t;
						j->dst[k++] = o < (size_t)j->oc
							? j->w[((o * (size_t)j->ic + (size_t)c) * (size_t)j->kh +
								(size_t)y) * (size_t)j->kw + (size_t)x]
							: 0.0f;
					}
}

void conv_pack(const float *w, int oc, int ic, int kh, int kw, int oct, float *dst)
{
	pack_job j = { w, oc, ic, kh, kw, oct, dst };
	size_t per = (size_t)oct * (size_t)ic * (size_t)kh * (size_t)kw;
	/* panels over the cores (a model's weights are packed once, at load) */
	cu_parallel((size_t)(oc + oct - 1) / (size_t)oct, per ? ((size_t)1 << 18) / per + 1 : 1,
		    pack_panels, &j);
}

void conv_args_init(conv_args *a, int pad)
{
	memset(a, 0, sizeof(*a));
	a->stride = 1;
	a->pad_t = a->pad_l = a->pad_b = a->pad_r = pad;
	a->bias = a->bias2 = a->res = -1;
	a->out_div = 1.0f;
	a->act = CU_ACT_NONE;
}

static clunet_status conv_prepare(cu_plan *p, cu_op *op)
{
	cu_graph *g = p->g;
	const cu_tensor *x = cu_t(g, op->in[0]), *y = cu_t(g, op->out);
	int n = (int)x->ne[0], ic = (int)x->ne[1];
	int ih = x->ndim == 4 ? (int)x->ne[2] : 1, iw = x->ndim == 4 ? (int)x->ne[3] : 1;
	int oc = op->ip[P_OC], oh = y->ndim == 4 ? (int)y->ne[2] : 1;
	int ow = y->ndim == 4 ? (int)y->ne[3] : 1;
	/* unpacked weights (oct 0): blocks of 8 rows gathered, or fewer for a small layer */
	int wpk = op->ip[P_OCT] != 0, oct = wpk ? op->ip[P_OCT] : conv_panel_width_small(oc);
	int vw = oct >= 16 ? 16 : oct, ocb = oct / vw;
	int px = ocb >= 4 ? 6 : ocb >= 2 ? 8 : 8;
	char opts[256];
	clunet_status st;

	if (px > ow)
		px = ow;
	snprintf(opts, sizeof(opts),
		 "-cl-std=CL1.2 -DVW=%d -DOCB=%d -DPX=%d -DKH=%d -DKW=%d -DS=%d -DUPS=%d "
		 "-DHAS_BIAS=%d -DHAS_BIAS2=%d -DRES=%d -DDIV=%d -DACT=%d -DWPK=%d",
		 vw, ocb, px, op->ip[P_KH], op->ip[P_KW], op->ip[P_S], op->ip[P_UPS],
		 op->in[2] >= 0, op->in[3] >= 0, op->in[4] >= 0, op->fp[0] != 1.0f, op->ip[P_ACT],
		 wpk);
	st = cu_op_kernel(p, op, "conv2d.cl", opts, "conv2d_f32");
	if (st)
		return st;
	st = cu_set_args(p, op, "tttttt" "iiiiiiiif", op->in[0], op->in[1], op->in[2], op->in[3],
			 op->in[4], op->out, ic, ih, iw, oc, oh, ow, op->ip[P_PT], op->ip[P_PL],
			 (double)op->fp[0]);
	if (st)
		return st;
	cu_op_range(op, 3, (size_t)(ow + px - 1) / (size_t)px, (size_t)oh,
		    (size_t)n * (size_t)((oc + oct - 1) / oct));
	if (p->rt->is_cpu) {
		op->use_lws = 1;
		op->lws[0] = op->lws[1] = op->lws[2] = 1;
	}
	return CLUNET_OK;
}

/* conv_pv's register tile: VW-wide pixel vectors (the device's native float
 * width: 16 with AVX-512, 8 with AVX2), PV of them, OCR output channels, and
 * ROWS > 0 for a column of rows (PV / ROWS vectors each) rather than PV
 * vectors along the padded width. Defaults, measured at SD 1.5's shapes:
 * - AVX2-class (16 registers): 3 x 4 for 3x3 convs, 2 x 6 for 1x1 ones and
 *   linear layers (2026-12-01, an AVX2 EPYC).
 * - AVX-512-class (32 registers; 2026-12-02, an AVX-512 EPYC with two FMA
 *   pipes): 3x3 stride 1 over rows a whole number of vectors wide, four rows of
 *   one vector x 5 channels (20 accumulators; the rows' taps share input
 *   loads, 6 rows x 3 columns per input channel for 36 of them, against 27
 *   loads for 3 vectors along a row): 92-100 % of the FMA peak against 52-61 %
 *   for 3 x 8 along the row, which also computes the padding columns; packed
 *   weights (8 channels) three rows. Stride 2 two rows of one vector x 8;
 *   rows narrower than a vector (8x8) one vector x 12 (62 % against 40 %);
 *   other 3x3 2 x 8 along the row; 1x1 3 x 8.
 * A variant ("vw=8,pv=2,ocr=6") may say otherwise; one that names vw or pv
 * has no rows unless it says so. Packed weights fix OCR to their panel width.
 * A tile along the row never exceeds CONV_PV_TILE pixels (the slack of the
 * padded planes); a row tile's row part neither. */
static void conv_pv_tile(const rt_ctx *rt, const cu_op *op, int oh, int ow, const char *variant,
			 int *vw, int *pv, int *ocr, int *rows)
{
	const int oct = op->ip[P_OCT], taps = op->ip[P_KH] * op->ip[P_KW], s = op->ip[P_S];
	const int wide = rt->vec_width >= 16;
	int def_pv, def_ocr, def_rows = 0;
	if (!wide) {
		def_pv = taps > 1 ? 3 : 2;
		def_ocr = taps > 1 ? 4 : 6;
	} else if (taps == 1) {
		def_pv = CONV_PV_PV;
		def_ocr = CONV_PV_OCR;
	} else if (ow % 16 == 0 && s == 1 && oh >= 4) {
		def_pv = def_rows = oct ? 3 : 4;
		def_ocr = oct ? oct : 5;
	} else if (ow % 16 == 0 && s == 2 && oh >= 2) {
		def_pv = def_rows = 2;
		def_ocr = CONV_PV_OCR;
	} else if (ow < 16) {
		def_pv = 1;
		def_ocr = 12;
	} else {
		def_pv = 2;
		def_ocr = CONV_PV_OCR;
	}
	if (cu_variant_int(variant, "vw", 0) || cu_variant_int(variant, "pv", 0))
		def_rows = 0;
	*vw = cu_variant_int(variant, "vw", wide ? 16 : 8);
	if (*vw != 8 && *vw != 16)
		*vw = wide ? 16 : 8;
	*pv = cu_variant_int(variant, "pv", *vw == (wide ? 16 : 8) ? def_pv : *vw == 16 ? 1 : 3);
	*rows = cu_variant_int(variant, "rows", def_rows);
	if (*pv < 1 || *pv > 8 ||
	    *vw * *pv / (*rows > 0 && *rows <= *pv ? *rows : 1) > CONV_PV_TILE)
		*pv = 1;
	*ocr = oct ? oct : cu_variant_int(variant, "ocr", *vw == (wide ? 16 : 8) ? def_ocr : 6);
	if (*ocr < 1 || *ocr > 16)
		*ocr = def_ocr;
}

static clunet_status conv_pv_prepare(cu_plan *p, cu_op *op)
{
	cu_graph *g = p->g;
	const cu_tensor *y = cu_t(g, op->out);
	int n = (int)y->ne[0], oc = op->ip[P_OC], ic = op->ip[P_IC];
	int oh = y->ndim == 4 ? (int)y->ne[2] : 1, ow = y->ndim == 4 ? (int)y->ne[3] : 1;
	const char *variant = cu_op_variant(p, op);
	/* 3x3 (and larger) kernels: groups of 12 pixel tiles per channel block by
	 * default (the weights of a block serve 12 tiles while cached: 1.8x at
	 * 16x16 and 2.6x at 8x8 with 1280 channels, even at 64x64); 1x1: channel
	 * blocks fastest */
	const int taps = op->ip[P_KH] * op->ip[P_KW];
	int vw, pv, ocr, ord = cu_variant_int(variant, "ord", taps > 1 ? 2 : 0);
	int tg = cu_variant_int(variant, "tg", 12), rows;
	size_t tiles, blocks;
	char opts[256];
	clunet_status st;
	conv_pv_tile(p->rt, op, oh, ow, variant, &vw, &pv, &ocr, &rows);
	if (op->ip[P_GEGLU] && ocr % 2) /* half the rows from each half of the weight */
		ocr++;
	blocks = (size_t)(oc + ocr / (op->ip[P_GEGLU] ? 2 : 1) - 1) /
		 (size_t)(ocr / (op->ip[P_GEGLU] ? 2 : 1));
	/* row tiles (rows > 0) skip the padding columns and share the taps'
	 * input rows, but touch more cache lines per input channel: AVX-512-class
	 * defaults, tuning candidates on AVX2 (they won at some shapes and lost
	 * at others there) */
	if (rows < 0 || rows > pv || (rows && pv % rows) || rows > oh)
		return cu_fail(CLUNET_ERR_ARGUMENT,
			       "conv_pv: variant '%s': rows must divide pv (%d) and not exceed the "
			       "output height (%d)", variant, pv, oh);
	if (rows) {
		size_t tw = (size_t)(pv / rows * vw);
		tiles = ((size_t)ow + tw - 1) / tw * (((size_t)oh + (size_t)rows - 1) / (size_t)rows);
	} else
		tiles = (size_t)(op->ip[P_Q] + vw * pv - 1) / (size_t)(vw * pv);
	snprintf(opts, sizeof(opts),
		 "-cl-std=CL1.2 -DVW=%d -DOCR=%d -DPV=%d -DROWS=%d -DKH=%d -DKW=%d -DS=%d -DORD=%d -DTG=%d "
		 "-DUPS=0 -DHAS_BIAS=%d -DHAS_BIAS2=%d -DRES=%d -DDIV=%d -DACT=%d -DWPK=%d -DGEGLU=%d",
		 vw, ocr, pv, rows, op->ip[P_KH], op->ip[P_KW], op->ip[P_S], ord, tg,
		 op->in[2] >= 0, op->in[3] >= 0, op->in[4] >= 0, op->fp[0] != 1.0f, op->ip[P_ACT],
		 op->ip[P_OCT] != 0, op->ip[P_GEGLU]);
	st = cu_op_kernel(p, op, "conv_pv.cl", opts, "conv_pv_f32");
	if (st)
		return st;
	st = cu_set_args(p, op, "tttttt" "iiiiiiiif", op->in[0], op->in[1], op->in[2], op->in[3],
			 op->in[4], op->out, ic, op->ip[P_CS], op->ip[P_PW], op->ip[P_PS], oc, oh, ow,
			 op->ip[P_Q], (double)op->fp[0]);
	if (st)
		return st;
	if (ord < 0 || ord > 2 || tg < 1)
		return cu_fail(CLUNET_ERR_ARGUMENT, "conv_pv: variant '%s' has no such order", variant);
	if (ord == 2)
		cu_op_range(op, 2, (tiles + (size_t)tg - 1) / (size_t)tg * (size_t)tg * blocks,
			    (size_t)n, 1);
	else if (ord)
		cu_op_range(op, 3, tiles, blocks, (size_t)n);
	else
		cu_op_range(op, 3, blocks, tiles, (size_t)n);
	op->use_lws = 1;
	op->lws[0] = op->lws[1] = op->lws[2] = 1;
	return CLUNET_OK;
}

enum { PAD_C, PAD_IH, PAD_IW, PAD_PT, PAD_PL, PAD_PW, PAD_PHW, PAD_CS, PAD_UPS, PAD_PS, PAD_S };

static clunet_status pad_prepare(cu_plan *p, cu_op *op)
{
	const int *ip = op->ip;
	const cu_tensor *y = cu_t(p->g, op->out);
	char opts[160];
	clunet_status st;
	snprintf(opts, sizeof(opts),
		 "-cl-std=CL1.2 -DOCR=1 -DPV=1 -DKH=1 -DKW=1 -DS=%d -DUPS=%d -DHAS_BIAS=0 "
		 "-DHAS_BIAS2=0 -DRES=0 -DDIV=0 -DACT=0", ip[PAD_S], ip[PAD_UPS]);
	st = cu_op_kernel(p, op, "conv_pv.cl", opts, "pad2d_f32");
	if (!st)
		st = cu_set_args(p, op, "tt" "iiiiiiiii", op->in[0], op->out, ip[PAD_C], ip[PAD_IH],
				 ip[PAD_IW], ip[PAD_PT], ip[PAD_PL], ip[PAD_PW], ip[PAD_PHW],
				 ip[PAD_PS], ip[PAD_CS]);
	cu_op_range(op, 3, (size_t)(ip[PAD_PS] + ip[PAD_PW] - 1) / (size_t)ip[PAD_PW],
		    (size_t)ip[PAD_C] * (size_t)(ip[PAD_S] * ip[PAD_S]), (size_t)y->ne[0]);
	return st;
}

static int conv_pv_key(const cu_plan *p, const cu_op *op, char *buf, size_t cap)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	snprintf(buf, cap, "conv_pv n%lld ic%d oc%d k%dx%d s%d q%d pw%d%s%s", (long long)y->ne[0],
		 op->ip[P_IC], op->ip[P_OC], op->ip[P_KH], op->ip[P_KW], op->ip[P_S], op->ip[P_Q],
		 op->ip[P_PW], op->ip[P_OCT] ? "" : " w", op->ip[P_GEGLU] ? " geglu" : "");
	return 1;
}

/* Register tiles for both vector widths (pixel vectors x output channels;
 * packed weights fix the channels to their panel width) in the default
 * order, row tiles, and the default tile in the other orders; the default is
 * not listed. Every tile fits the padded plane's slack (CONV_PV_TILE). */
static int conv_pv_variant(const cu_plan *p, const cu_op *op, int i, char *buf, size_t cap)
{
	static const int t8[][2] = { { 1, 8 }, { 1, 12 }, { 2, 4 }, { 2, 5 }, { 2, 6 }, { 3, 3 },
				     { 3, 4 }, { 4, 2 }, { 4, 3 } };
	static const int t16[][2] = { { 1, 4 }, { 1, 6 }, { 1, 8 }, { 1, 12 }, { 2, 4 },
				      { 2, 8 }, { 2, 12 }, { 3, 5 }, { 3, 8 } };
	/* row tiles (3x3 kernels over rows a whole number of vectors wide):
	 * { vw, pv, ocr, rows }: a row of two vectors, columns of 2-4 rows */
	static const int rt[][4] = { { 8, 2, 6, 1 }, { 8, 2, 6, 2 }, { 8, 3, 4, 3 },
				     { 8, 4, 3, 4 }, { 16, 2, 8, 2 }, { 16, 3, 8, 3 },
				     { 16, 4, 5, 4 }, { 16, 4, 6, 4 } };
	const cu_tensor *y = cu_t(p->g, op->out);
	int oh = y->ndim == 4 ? (int)y->ne[2] : 1, ow = y->ndim == 4 ? (int)y->ne[3] : 1;
	int dvw, dpv, docr, drows, oct = op->ip[P_OCT], n = 0;
	char drow[16] = "";
	conv_pv_tile(p->rt, op, oh, ow, "", &dvw, &dpv, &docr, &drows);
	for (int w = 0; w < 2; w++) {
		const int(*t)[2] = w ? t16 : t8;
		int nt = w ? (int)CU_ARRAY_LEN(t16) : (int)CU_ARRAY_LEN(t8), vw = w ? 16 : 8;
		for (int k = 0; k < nt; k++) {
			int pv = t[k][0], ocr = oct ? oct : t[k][1];
			if (oct && k > 0 && t[k][0] == t[k - 1][0])
				continue; /* the channels are fixed: one tile per pixel count */
			if (!drows && vw == dvw && pv == dpv && ocr == docr)
				continue;
			if (n++ == i) {
				snprintf(buf, cap, "vw=%d,pv=%d,ocr=%d", vw, pv, ocr);
				return 1;
			}
		}
	}
	if (op->ip[P_KH] * op->ip[P_KW] > 1 && y->ndim == 4) {
		for (int k = 0; k < (int)CU_ARRAY_LEN(rt); k++) {
			int ocr = oct ? oct : rt[k][2];
			if (ow % rt[k][0] || oh < rt[k][3])
				continue;
			if (oct && k > 0 && !memcmp(rt[k], rt[k - 1], 2 * sizeof(int)) &&
			    rt[k][3] == rt[k - 1][3])
				continue; /* the same tile once the channels are fixed */
			if (rt[k][0] == dvw && rt[k][1] == dpv && ocr == docr && rt[k][3] == drows)
				continue;
			if (n++ == i) {
				snprintf(buf, cap, "vw=%d,pv=%d,ocr=%d,rows=%d", rt[k][0], rt[k][1], ocr,
					 rt[k][3]);
				return 1;
			}
		}
	}
	/* the default tile in the other orders */
	if (drows)
		snprintf(drow, sizeof(drow), ",rows=%d", drows);
	for (int o = 0; o < 5; o++) {
		static const char *const ords[] = { "ord=0", "ord=1", "ord=2,tg=4", "ord=2,tg=12",
						    "ord=2,tg=32" };
		int dord = op->ip[P_KH] * op->ip[P_KW] > 1 ? 3 : 0;
		if (o == dord)
			continue;
		if (n++ == i) {
			snprintf(buf, cap, "vw=%d,pv=%d,ocr=%d%s,%s", dvw, dpv, docr, drow, ords[o]);
			return 1;
		}
	}
	return 0;
}

static const cu_op_impl pad_impl = { .kind = "pad", .prepare = pad_prepare };
static const cu_op_impl conv_pv_impl = { .kind = "conv2d", .prepare = conv_pv_prepare,
	.tune_key = conv_pv_key, .variant = conv_pv_variant };
static const cu_op_impl conv1x1_pv_impl = { .kind = "conv1x1", .prepare = conv_pv_prepare,
	.tune_key = conv_pv_key, .variant = conv_pv_variant };

/* ---- the general path: im2col + GEMM + epilogue (CLUNET_CONV=im2col) ---- */

enum { I2C_IC, I2C_IH, I2C_IW, I2C_OH, I2C_OW, I2C_PT, I2C_PL, I2C_KH, I2C_KW, I2C_S, I2C_UPS };

static clunet_status conv_opts(char *buf, size_t cap, const cu_op *op, int kh, int kw, int s,
			       int ups, int act)
{
	snprintf(buf, cap,
		 "-cl-std=CL1.2 -DVW=1 -DOCB=1 -DPX=1 -DKH=%d -DKW=%d -DS=%d -DUPS=%d "
		 "-DHAS_BIAS=%d -DHAS_BIAS2=%d -DRES=%d -DDIV=%d -DACT=%d",
		 kh, kw, s, ups, op->in[1] >= 0, op->in[2] >= 0, op->in[3] >= 0,
		 op->fp[0] != 1.0f, act);
	return CLUNET_OK;
}

static clunet_status im2col_prepare(cu_plan *p, cu_op *op)
{
	const int *ip = op->ip;
	const cu_tensor *y = cu_t(p->g, op->out);
	char opts[256];
	clunet_status st;
	snprintf(opts, sizeof(opts),
		 "-cl-std=CL1.2 -DVW=1 -DOCB=1 -DPX=1 -DKH=%d -DKW=%d -DS=%d -DUPS=%d "
		 "-DHAS_BIAS=0 -DHAS_BIAS2=0 -DRES=0 -DDIV=0 -DACT=0",
		 ip[I2C_KH], ip[I2C_KW], ip[I2C_S], ip[I2C_UPS]);
	st = cu_op_kernel(p, op, "conv2d.cl", opts, "im2col_f32");
	if (!st)
		st = cu_set_args(p, op, "tt" "iiiiiii", op->in[0], op->out, ip[I2C_IC], ip[I2C_IH],
				 ip[I2C_IW], ip[I2C_OH], ip[I2C_OW], ip[I2C_PT], ip[I2C_PL]);
	cu_op_range(op, 3, (size_t)ip[I2C_OH] * (size_t)ip[I2C_OW],
		    (size_t)ip[I2C_IC] * (size_t)(ip[I2C_KH] * ip[I2C_KW]), (size_t)y->ne[0]);
	return st;
}

static clunet_status epilogue_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *y = cu_t(p->g, op->out);
	int oc = (int)y->ne[1], pp = (int)(cu_numel(y) / (y->ne[0] * oc));
	char opts[256];
	clunet_status st;
	conv_opts(opts, sizeof(opts), op, 1, 1, 1, 0, op->ip[0]);
	st = cu_op_kernel(p, op, "conv2d.cl", opts, "conv_epilogue_f32");
	if (!st)
		st = cu_set_args(p, op, "ttttt" "iif", op->in[0], op->in[1], op->in[2], op->in[3],
				 op->out, oc, pp, (double)op->fp[0]);
	cu_op_range(op, 3, (size_t)pp, (size_t)oc, (size_t)y->ne[0]);
	return st;
}

static const cu_op_impl im2col_impl = { .kind = "im2col", .prepare = im2col_prepare };
static const cu_op_impl epilogue_impl = { .kind = "conv_epilogue", .prepare = epilogue_prepare };

/* Whether the general path runs this convolution: only when forced, and
 * when the packed panels tile the output channels exactly (the GEMM writes
 * whole panels). */
static int use_im2col(int oc, int oct)
{
	const char *e = getenv("CLUNET_CONV");
	return e && !strcmp(e, "im2col") && (oct == 0 || oc % oct == 0);
}

static int conv_im2col_graph(cu_graph *g, int x, int w, int y, int oc, int kh, int kw,
			     const conv_args *a, int oh, int ow, int oct)
{
	const cu_tensor *xt = cu_t(g, x);
	int n = (int)xt->ne[0], ic = (int)xt->ne[1];
	int ih = xt->ndim == 4 ? (int)xt->ne[2] : 1, iw = xt->ndim == 4 ? (int)xt->ne[3] : 1;
	int k = ic * kh * kw, pp = oh * ow, col, acc, opi, in[4];
	col = cu_graph_act(g, 3, (int64_t[]){ n, k, pp });
	acc = cu_graph_act(g, 3, (int64_t[]){ n, oc, pp });
	if (col < 0 || acc < 0)
		return -1;
	opi = cu_graph_op(g, &im2col_impl, &x, 1, col);
	if (opi < 0)
		return -1;
	{
		int *ip = g->ops[opi].ip;
		ip[I2C_IC] = ic;
		ip[I2C_IH] = ih;
		ip[I2C_IW] = iw;
		ip[I2C_OH] = oh;
		ip[I2C_OW] = ow;
		ip[I2C_PT] = a->pad_t;
		ip[I2C_PL] = a->pad_l;
		ip[I2C_KH] = kh;
		ip[I2C_KW] = kw;
		ip[I2C_S] = a->stride;
		ip[I2C_UPS] = a->upsample;
	}
	for (int b = 0; b < n; b++) {
		/* panel j of the packed weights is A_j^T = [k][oct]: rows j*oct.. of Y;
		 * unpacked weights (oct 0) are A = [oc][k] itself */
		gemm_args ga;
		memset(&ga, 0, sizeof(ga));
		ga.trans_a = oct != 0;
		ga.m = oct ? oct : oc;
		ga.n = pp;
		ga.k = k;
		ga.lda = oct ? oct : k;
		ga.ldb = pp;
		ga.ldc = pp;
		ga.batch = oct ? oc / oct : 1;
		ga.stride_a = (long)k * oct;
		ga.stride_b = 0;
		ga.stride_c = (long)oct * pp;
		ga.alpha = 1.0f;
		if (op_gemm_into(g, w, cu_view(g, col, (int64_t)b * k * pp, 2, (int64_t[]){ k, pp }), &ga,
				 cu_view(g, acc, (int64_t)b * oc * pp, 2, (int64_t[]){ oc, pp })) < 0)
			return -1;
	}
	in[0] = acc;
	in[1] = a->bias;
	in[2] = a->bias2;
	in[3] = a->res;
	opi = cu_graph_op(g, &epilogue_impl, in, 4, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = a->act;
	g->ops[opi].fp[0] = a->out_div;
	g->ops[opi].flops = 0;
	return y;
}

/* Whether conv_pv runs this convolution (or CLUNET_CONV forces a choice). */
static int use_pv(cu_graph *g, int oct, int stride, int q)
{
	const char *e = getenv("CLUNET_CONV");
	if (!g->rt->is_cpu || (oct != conv_pv_panel(g->rt) && oct != 0) || stride > 2)
		return 0;
	if (e && !strcmp(e, "direct"))
		return 0;
	if (e && !strcmp(e, "pv"))
		return 1;
	return q >= 16; /* fewer output pixels than one vector: the channel-vector kernel */
}

/* one implementation, three names in profiles */
static const cu_op_impl conv_impl = { .kind = "conv2d", .prepare = conv_prepare };
static const cu_op_impl conv1x1_impl = { .kind = "conv1x1", .prepare = conv_prepare };
static const cu_op_impl linear_impl = { .kind = "linear", .prepare = conv_prepare };

/* The panel width of weight wt for oc x ic x kh x kw convolutions: packed
 * [OC/oct][IC][KH][KW][oct] gives oct, the checkpoint's [OC][IC][KH][KW] 0;
 * anything else -1. */
static int conv_weight_panel(cu_graph *g, int wt, int ic, int oc, int kh, int kw)
{
	const cu_tensor *t = cu_t(g, wt);
	int oct = t->ndim == 5 ? (int)t->ne[4] : 0;
	if ((t->ndim != 5 && t->ndim != 4) || t->ne[1] != ic || t->ne[2] != kh || t->ne[3] != kw ||
	    (t->ndim == 5 ? t->ne[0] * oct < oc : t->ne[0] != oc))
		return -1;
	return oct;
}

/* The epilogue's residual (y's size) and per-sample bias ([n, oc]) against
 * the output y: 0, or -1 with the graph failed and an error naming the one
 * that does not fit (op: the op's name in it). */
static int conv_check_epilogue(cu_graph *g, const char *op, const conv_args *a, int y, int n,
			       int oc)
{
	char s1[96], s2[96];
	if (a->res >= 0 && cu_numel(cu_t(g, a->res)) != cu_numel(cu_t(g, y))) {
		cu_fail(CLUNET_ERR_ARGUMENT, "%s: residual %s does not match the output %s", op,
			cu_shape_str(cu_t(g, a->res), s1, sizeof(s1)),
			cu_shape_str(cu_t(g, y), s2, sizeof(s2)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (a->bias2 >= 0 && cu_numel(cu_t(g, a->bias2)) != (int64_t)n * oc) {
		cu_fail(CLUNET_ERR_ARGUMENT, "%s: per-sample bias %s is not [%d, %d]", op,
			cu_shape_str(cu_t(g, a->bias2), s1, sizeof(s1)), n, oc);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	return 0;
}

/* conv_pv's padded input for output pixels oh rows over the padded width pw:
 * q output positions, planes of ps floats (cs = ps * stride^2 per channel,
 * the phase planes of a stride-2 conv). Always a padded copy (~1 % of a
 * layer's time): the tiles may run past the last pixel, and planes a
 * power-of-two stride apart fall into a few cache sets (a 1x1 conv over 64x64
 * pixels read in place ran at a third of its speed). */
static void conv_pv_layout(int oh, int pw, int kh, int kw, int st, int *q, int *ps, int *cs)
{
	*q = oh * pw;
	/* past the last output: the reach of the last tile along the padded
	 * width (< CONV_PV_TILE) or of the last row tile (its vectors end less than
	 * CONV_PV_TILE past the last row's start + OW), plus the taps' */
	*ps = *q + CONV_PV_TILE + ((kh - 1) / st) * pw + (kw - 1) / st;
	*ps = (*ps + 15) / 16 * 16;
	if (*ps % 32 == 0) /* an odd number of 64-byte lines between planes */
		*ps += 16;
	*cs = *ps * st * st;
}

/* The conv_pv op over xp, the input in conv_pv's padded layout. */
static int conv_pv_op(cu_graph *g, int xp, int w, int y, int oc, int kh, int kw,
		      const conv_args *a, int ic, int pixels, int pw, int q, int ps, int cs, int oct,
		      int geglu)
{
	int in[5] = { xp, w, a->bias, a->bias2, a->res };
	int opi = cu_graph_op(g, kh * kw == 1 ? &conv1x1_pv_impl : &conv_pv_impl, in, 5, y);
	cu_op *op;
	if (opi < 0)
		return -1;
	op = &g->ops[opi];
	op->ip[P_OC] = oc;
	op->ip[P_KH] = kh;
	op->ip[P_KW] = kw;
	op->ip[P_S] = a->stride;
	op->ip[P_IC] = ic;
	op->ip[P_ACT] = a->act;
	op->ip[P_OCT] = oct;
	op->ip[P_GEGLU] = geglu;
	op->ip[P_PW] = pw;
	op->ip[P_CS] = cs;
	op->ip[P_PS] = ps;
	op->ip[P_Q] = q;
	op->fp[0] = a->out_div;
	op->flops = 2.0 * cu_t(g, y)->ne[0] * oc * (geglu ? 2 : 1) * pixels * (double)ic * kh * kw;
	return y;
}

/* The conv_pv form of op_conv2d: a pad op, then the conv. */
static int conv_pv_graph(cu_graph *g, int x, int w, int y, int oc, int kh, int kw,
			 const conv_args *a, int oh, int ow, int oct, int geglu)
{
	const cu_tensor *xt = cu_t(g, x);
	int n = (int)xt->ne[0], ic = (int)xt->ne[1], st = a->stride;
	int ih = xt->ndim == 4 ? (int)xt->ne[2] : 1, iw = xt->ndim == 4 ? (int)xt->ne[3] : 1;
	int lh = ih * (a->upsample == 1 ? 2 : 1), lw = a->upsample ? 2 * iw - (a->upsample == 2) : iw;
	int pw = lw + a->pad_l + a->pad_r, ph = lh + a->pad_t + a->pad_b;
	int cs, ps, q, xp, opi;
	if (st == 2) { /* four phase planes of half the (even) padded size */
		pw = (pw + 1) / 2;
		ph = (ph + 1) / 2;
	}
	conv_pv_layout(oh, pw, kh, kw, st, &q, &ps, &cs);
	xp = cu_graph_act(g, 3, (int64_t[]){ n, ic, cs });
	if (xp < 0)
		return -1;
	opi = cu_graph_op(g, &pad_impl, &x, 1, xp);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[PAD_C] = ic;
	g->ops[opi].ip[PAD_IH] = ih;
	g->ops[opi].ip[PAD_IW] = iw;
	g->ops[opi].ip[PAD_PT] = a->pad_t;
	g->ops[opi].ip[PAD_PL] = a->pad_l;
	g->ops[opi].ip[PAD_PW] = pw;
	g->ops[opi].ip[PAD_PHW] = ph * pw;
	g->ops[opi].ip[PAD_PS] = ps;
	g->ops[opi].ip[PAD_CS] = cs;
	g->ops[opi].ip[PAD_UPS] = a->upsample;
	g->ops[opi].ip[PAD_S] = st;
	return conv_pv_op(g, xp, w, y, oc, kh, kw, a, ic, oh * ow, pw, q, ps, cs, oct, geglu);
}

int op_conv1x1_pv_pitch(cu_graph *g, int wt, int ic, int oc, int h, int w)
{
	int oct, q, ps, cs;
	if (g->status || wt < 0 || h < 1 || w < 1)
		return 0;
	oct = conv_weight_panel(g, wt, ic, oc, 1, 1);
	if (oct < 0 || use_im2col(oc, oct) || !use_pv(g, oct, 1, h * w))
		return 0;
	conv_pv_layout(h, w, 1, 1, 1, &q, &ps, &cs);
	return cs;
}

int op_conv1x1_padded(cu_graph *g, int xp, int h, int w, int wt, int oc, const conv_args *a)
{
	const cu_tensor *xt;
	int n, ic, oct, q, ps, cs, y;
	char s1[96], s2[96];
	if (g->status || xp < 0 || wt < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	xt = cu_t(g, xp);
	n = (int)xt->ne[0];
	ic = xt->ndim == 3 ? (int)xt->ne[1] : 0;
	oct = conv_weight_panel(g, wt, ic, oc, 1, 1);
	if (oct < 0) {
		cu_fail(CLUNET_ERR_ARGUMENT, "conv1x1: weight %s is not [%d, %d, 1, 1]",
			cu_shape_str(cu_t(g, wt), s1, sizeof(s1)), oc, ic);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	conv_pv_layout(h, w, 1, 1, 1, &q, &ps, &cs);
	if (xt->ndim != 3 || xt->ne[2] != cs || op_conv1x1_pv_pitch(g, wt, ic, oc, h, w) != cs ||
	    a->stride != 1 || a->upsample || (a->pad_t | a->pad_l | a->pad_b | a->pad_r)) {
		cu_fail(CLUNET_ERR_ARGUMENT, "conv1x1: input %s is not conv_pv's padded layout of "
			"%d x %d pixels ([N, C, %d]), or the convolution is not one conv_pv runs",
			cu_shape_str(xt, s2, sizeof(s2)), h, w, cs);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	y = cu_graph_act(g, 4, (int64_t[]){ n, oc, h, w });
	if (y < 0 || conv_check_epilogue(g, "conv1x1", a, y, n, oc) < 0)
		return -1;
	return conv_pv_op(g, xp, wt, y, oc, 1, 1, a, ic, h * w, w, q, ps, cs, oct, 0);
}

int op_conv_geglu(cu_graph *g, int x, int w, int oc, const conv_args *a)
{
	const cu_tensor *xt, *wt;
	int64_t ne[4];
	int y;
	conv_args b = *a;
	if (g->status || x < 0 || w < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	xt = cu_t(g, x);
	wt = cu_t(g, w);
	/* fused: conv_pv over the file's rows, a bias and nothing else in the epilogue */
	if (oc % 2 == 0 && wt->ndim == 4 && wt->ne[0] == oc && wt->ne[1] == xt->ne[1] &&
	    wt->ne[2] == 1 && wt->ne[3] == 1 && xt->ndim == 4 && a->bias >= 0 && a->res < 0 &&
	    a->bias2 < 0 && a->act == CU_ACT_NONE && a->out_div == 1.0f && a->stride == 1 &&
	    !a->upsample && !(a->pad_t | a->pad_l | a->pad_b | a->pad_r) &&
	    use_pv(g, 0, 1, (int)(xt->ne[2] * xt->ne[3])) && !getenv("CLUNET_GEGLU_UNFUSED")) {
		ne[0] = xt->ne[0];
		ne[1] = oc / 2;
		ne[2] = xt->ne[2];
		ne[3] = xt->ne[3];
		y = cu_graph_act(g, 4, ne);
		if (y < 0)
			return -1;
		return conv_pv_graph(g, x, w, y, oc / 2, 1, 1, &b, (int)ne[2], (int)ne[3], 0, 1);
	}
	return op_geglu(g, op_conv2d(g, x, w, oc, 1, 1, a));
}

int op_conv2d(cu_graph *g, int x, int w, int oc, int kh, int kw, const conv_args *a)
{
	const cu_tensor *xt, *wt;
	int64_t ne[4];
	int ih, iw, oh, ow, y, opi, ic, oct, in[5];
	char s1[96], s2[96];
	if (g->status || x < 0 || w < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	if (cu_t(g, x)->ndim == 3 && kh == 1) { /* 1-D: [N, C, L] as [N, C, 1, L] */
		const cu_tensor *t3 = cu_t(g, x);
		int64_t n4[4] = { t3->ne[0], t3->ne[1], 1, t3->ne[2] }, n3[3];
		conv_args a4 = *a;
		int y4;
		if (a4.res >= 0 && cu_t(g, a4.res)->ndim == 3) {
			const cu_tensor *r = cu_t(g, a4.res);
			int64_t r4[4] = { r->ne[0], r->ne[1], 1, r->ne[2] };
			a4.res = cu_reshape(g, a4.res, 4, r4);
		}
		y4 = op_conv2d(g, cu_reshape(g, x, 4, n4), w, oc, kh, kw, &a4);
		if (y4 < 0)
			return -1;
		n3[0] = cu_t(g, y4)->ne[0];
		n3[1] = cu_t(g, y4)->ne[1];
		n3[2] = cu_t(g, y4)->ne[3];
		return cu_reshape(g, y4, 3, n3);
	}
	xt = cu_t(g, x);
	wt = cu_t(g, w);
	if (xt->ndim != 4 && !(xt->ndim == 2 && kh == 1 && kw == 1)) {
		cu_fail(CLUNET_ERR_ARGUMENT, "conv2d: input %s is not [N, C, H, W]",
			cu_shape_str(xt, s1, sizeof(s1)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	ic = (int)xt->ne[1];
	oct = conv_weight_panel(g, w, ic, oc, kh, kw);
	if (oct < 0) {
		cu_fail(CLUNET_ERR_ARGUMENT,
			"conv2d: weight %s does not fit input %s with %d outputs",
			cu_shape_str(wt, s1, sizeof(s1)), cu_shape_str(xt, s2, sizeof(s2)), oc);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	/* the logical input size, after the on-the-fly resampling */
	ih = xt->ndim == 4 ? (int)xt->ne[2] * (a->upsample == 1 ? 2 : 1) : 1;
	iw = xt->ndim == 4 ? (int)xt->ne[3] * (a->upsample ? 2 : 1) - (a->upsample == 2) : 1;
	oh = (ih + a->pad_t + a->pad_b - kh) / a->stride + 1;
	ow = (iw + a->pad_l + a->pad_r - kw) / a->stride + 1;
	if (oh <= 0 || ow <= 0) {
		cu_fail(CLUNET_ERR_ARGUMENT, "conv2d: input %s too small for a %dx%d kernel",
			cu_shape_str(xt, s1, sizeof(s1)), kh, kw);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	ne[0] = xt->ne[0];
	ne[1] = oc;
	ne[2] = oh;
	ne[3] = ow;
	y = cu_graph_act(g, xt->ndim, ne);
	if (y < 0)
		return -1;
	xt = cu_t(g, x); /* the tensor array may have moved */
	if (conv_check_epilogue(g, "conv2d", a, y, (int)xt->ne[0], oc) < 0)
		return -1;
	if (use_im2col(oc, oct))
		return conv_im2col_graph(g, x, w, y, oc, kh, kw, a, oh, ow, oct);
	if (use_pv(g, oct, a->stride, oh * (iw + a->pad_l + a->pad_r)))
		return conv_pv_graph(g, x, w, y, oc, kh, kw, a, oh, ow, oct, 0);
	in[0] = x;
	in[1] = w;
	in[2] = a->bias;
	in[3] = a->bias2;
	in[4] = a->res;
	opi = cu_graph_op(g, xt->ndim == 2 ? &linear_impl : kh * kw == 1 ? &conv1x1_impl : &conv_impl,
			  in, 5, y);
	if (opi < 0)
		return -1;
	{
		cu_op *op = &g->ops[opi];
		op->ip[P_OC] = oc;
		op->ip[P_KH] = kh;
		op->ip[P_KW] = kw;
		op->ip[P_S] = a->stride;
		op->ip[P_PT] = a->pad_t;
		op->ip[P_PL] = a->pad_l;
		op->ip[P_PB] = a->pad_b;
		op->ip[P_PR] = a->pad_r;
		op->ip[P_UPS] = a->upsample;
		op->ip[P_ACT] = a->act;
		op->ip[P_OCT] = oct;
		op->fp[0] = a->out_div;
		op->flops = 2.0 * (double)xt->ne[0] * oc * oh * ow * (double)ic * kh * kw;
	}
	return y;
}
