/* Op builders: each checks its inputs' shapes, creates the output tensor by
 * the op's shape rule and appends the op to the graph. The op's kernel
 * variant and launch geometry are chosen when the graph is planned.
 * Optional tensor inputs are -1. All activations are float32. */
#ifndef CLUNET_OPS_H
#define CLUNET_OPS_H

#include "core/graph.h"

/* ---- convolution (ops/conv.c) ---- */

/* Output channels per weight panel for a convolution with `oc` outputs on
 * this device: the packing is fixed at load, the rest is chosen per plan. */
int conv_panel_width(const rt_ctx *rt, int oc);
/* Packs w[oc][ic][kh][kw] into panels of `oct` channels (zero-padded). dst
 * holds ceil(oc/oct) * oct * ic * kh * kw floats. */
void conv_pack(const float *w, int oc, int ic, int kh, int kw, int oct, float *dst);
size_t conv_packed_size(int oc, int ic, int kh, int kw, int oct);

typedef struct conv_args {
	int stride;
	int pad_t, pad_l, pad_b, pad_r;
	int upsample;  /* 1: read the input nearest-upsampled x2; 2: with zeros
			  inserted along x (a stride-2 transposed conv) */
	int bias;      /* [OC] or -1 */
	int bias2;     /* [N, OC] added per sample (time embedding), or -1 */
	int res;       /* residual [N, OC, OH, OW], or -1 */
	float out_div; /* with res: (res + conv) / out_div */
	cu_act act;
} conv_args;

void conv_args_init(conv_args *a, int pad);
/* x: [N, IC, H, W] (or [N, IC] for a linear layer, or [N, IC, L] for a 1-D
 * conv with kh = 1); w: packed weights of `oc` x IC x kh x kw (see
 * conv_pack); returns [N, OC, OH, OW] (or [N, OC], or [N, OC, OL]). */
int op_conv2d(cu_graph *g, int x, int w, int oc, int kh, int kw, const conv_args *a);

/* A producer can write a 1x1, stride-1 convolution's input straight into
 * the padded layout conv_pv reads ([N][IC][pitch]: each channel's h x w
 * pixels row after row, then zeros up to pitch), saving the pad copy:
 * op_conv1x1_pv_pitch gives the pitch for weight wt (oc x ic), or 0 where
 * conv_pv would not run that convolution; op_conv1x1_padded is op_conv2d
 * (kh = kw = 1, no padding, stride or resampling) over such an xp,
 * returning [N, OC, h, w]. */
int op_conv1x1_pv_pitch(cu_graph *g, int wt, int ic, int oc, int h, int w);
int op_conv1x1_padded(cu_graph *g, int xp, int h, int w, int wt, int oc, const conv_args *a);

/* diffusers' GEGLU over a 1x1 projection with `oc` outputs: x, gate = the
 * two halves of conv(x); x * gelu(gate), [N, OC/2, H, W]. Folded into the
 * conv's epilogue where the weights are the file's rows (CPU-class devices)
 * and the epilogue has only a bias; else the conv, then op_geglu.
 * CLUNET_GEGLU_UNFUSED=1 forces the latter. */
int op_conv_geglu(cu_graph *g, int x, int w, int oc, const conv_args *a);

/* ---- normalisation (ops/norm.c) ---- */

/* GroupNorm of [N, C, ...] with `groups`; gamma/beta [C] or -1 (no affine);
 * ss [N, 2C] for scale-shift modulation or -1; then act. */
int op_group_norm(cu_graph *g, int x, int gamma, int beta, int groups, float eps, int ss,
		  cu_act act);
/* The same, then + post[n][c] ([N, C] or -1) + res (x's shape or -1) after the act. */
int op_group_norm_ex(cu_graph *g, int x, int gamma, int beta, int groups, float eps, int ss,
		     cu_act act, int post, int res);
/* Softmax over the last dimension of x (scores multiplied by scale first). */
int op_softmax(cu_graph *g, int x, float scale);
/* Softmax of x [R, L] + bias[r / rows_per_item][L] over the last dimension. */
int op_softmax_bias(cu_graph *g, int x, int bias, int rows_per_item);
/* LayerNorm over the channels of channel-major [N, C, ...] (or [N, C]). */
int op_layer_norm(cu_graph *g, int x, int gamma, int beta, float eps);

/* ---- elementwise (ops/ewise.c) ---- */

int op_act(cu_graph *g, int x, cu_act act);
int op_add(cu_graph *g, int a, int b);
int op_affine(cu_graph *g, int x, float alpha, float beta);
/* x[n, ...] / d[n] */
int op_div_rows(cu_graph *g, int x, int d);
/* channel concatenation of [N, Ca, ...] and [N, Cb, ...] */
int op_concat(cu_graph *g, int a, int b);
/* channels [c0, c0 + nc) of [N, C, ...] */
int op_slice_channels(cu_graph *g, int x, int c0, int nc);
/* nearest resize of [N, C, H, W] to (oh, ow) */
int op_nearest(cu_graph *g, int x, int oh, int ow);
int op_avgpool2(cu_graph *g, int x);
/* upfirdn2d with separable taps k [taps] (a weight tensor) */
int op_upfirdn2d(cu_graph *g, int x, int k, int up, int down, int pad0, int pad1);
/* GEGLU on [N, 2F, ...]: first half * gelu(second half) -> [N, F, ...] */
int op_geglu(cu_graph *g, int x);
/* [..., L] -> [...] mean over the last dimension */
int op_mean_last(cu_graph *g, int x);
/* concatenation along the last dimension of two tensors of equal leading dims */
int op_concat_last(cu_graph *g, int a, int b);
/* Downsample1d / Upsample1d of diffusers' 1-D UNet on [N, C, L] with taps k
 * (reflect padding; L/2 or 2L out) */
int op_resample1d(cu_graph *g, int x, int k, int up);
/* [N, C] -> [N, C, len], each value repeated along the length */
int op_repeat_len(cu_graph *g, int x, int len);
/* idx [R] (int32) rows of table [V, D] -> [R, D] */
int op_embed(cu_graph *g, int idx, int table);
/* t [N] -> [N, dim] sinusoidal embedding */
int op_timestep_embed(cu_graph *g, int t, int dim, int flip, float shift);
/* t [N], w [half] -> [N, 2*half] Gaussian Fourier features */
int op_fourier_embed(cu_graph *g, int t, int w, int use_log, int flip);

/* ---- FreeU (ops/freeu.c) ---- */

/* x with the first nch channels of every item multiplied by f. */
int op_scale_channels(cu_graph *g, int x, int nch, float f);
/* diffusers' fourier_filter(x, threshold, scale) on [N, C, H, W]: the
 * centred (2 threshold)^2 box of the shifted 2-D spectrum of every plane
 * scaled by `scale`. use_fft 0: the direct computation (threshold 1 only);
 * 1: clFFT (lengths factoring into 2, 3, 5, 7, 11, 13). */
int op_freeu_filter(cu_graph *g, int x, float scale, int threshold, int use_fft);

/* ---- GEMM (ops/gemm.c) ---- */

typedef struct gemm_args {
	int trans_a, trans_b;
	int m, n, k;
	int lda, ldb, ldc;
	long stride_a, stride_b, stride_c;
	int batch;
	float alpha;
} gemm_args;

/* Row-major strided-batched C = alpha * op(A) op(B) into a new tensor of
 * the given shape (numel must be batch * stride_c). */
int op_gemm(cu_graph *g, int a, int b, const gemm_args *args, int out_ndim,
	    const int64_t *out_ne);
/* The same into an existing tensor y (a view of a bigger one). */
int op_gemm_into(cu_graph *g, int a, int b, const gemm_args *args, int y);
/* 1 when op is a GEMM that may run on CLBlast on this device (the default on
 * GPU-class devices, or CLUNET_GEMM=clblast), with its shape
 * {trans_a, trans_b, m, n, k, batch}; else 0. For the CLBlast tuner. */
int op_gemm_clblast_shape(const cu_plan *p, const cu_op *op, int shape[6]);

/* ---- attention (ops/attention.c) ---- */

/* [batch, rows, cols] -> [batch, cols, rows] */
int op_transpose(cu_graph *g, int x, int batch, int rows, int cols);
/* The same into an existing tensor y (a view of a bigger one) of as many elements. */
int op_transpose_into(cu_graph *g, int x, int batch, int rows, int cols, int y);
/* softmax(scale q k^T + mask) v for bh batch-heads of head dim d, without
 * storing the scores: q [bh][d][lq] and k, v [bh][d][lk] channel-major; mask
 * [bh / heads][lk] (an additive bias per key) or -1; the result [bh][d][lq]
 * gets the given shape. */
int op_attention_fused(cu_graph *g, int q, int k, int v, int mask, int heads, int bh, int d, int lq,
		       int lk, float scale, int out_ndim, const int64_t *out_ne);
/* The same into an existing y [bh][d][yp], rows yp >= lq apart with zeros
 * after each: y can be the padded input of the convolution that follows
 * (op_conv1x1_pv_pitch), whose pitch, not a power of two, also keeps the
 * rows out of each other's cache sets. Returns y. */
int op_attention_fused_into(cu_graph *g, int q, int k, int v, int mask, int heads, int bh, int d,
			    int lq, int lk, float scale, int y, int yp);

#endif
