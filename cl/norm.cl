/* GroupNorm over NCHW (and NCL) tensors with optional affine, scale-shift
 * modulation, activation, and additions after the activation:
 *   y = act( ((x - mean) * rstd * gamma[c] + beta[c]) * (1 + ss[n][c]) + ss[n][C + c] )
 *       + post[n][c] + res[n][c][i]
 * Statistics per (n, group) over the contiguous span of C/G channels x HW,
 * two passes (mean, then centred variance), biased variance, eps inside the
 * square root: PyTorch's semantics.
 * Defines: LS  work-items per group (1: one work-item walks the whole span,
 *              no barriers; the right shape for CPU devices),
 *          ACT activation (CU_ACT_*), AFFINE, SS, POST, RES (0/1). */

#ifndef LS
#define LS 1
#endif

inline float cu_group_sum(float v, __local float *scratch)
{
#if LS == 1
	return v;
#else
	int l = get_local_id(0);
	scratch[l] = v;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int s = LS / 2; s > 0; s >>= 1) {
		if (l < s)
			scratch[l] += scratch[l + s];
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	float r = scratch[0];
	barrier(CLK_LOCAL_MEM_FENCE);
	return r;
#endif
}

__kernel void group_norm_f32(__global const float *x, uint x_off, __global const float *gamma,
			     uint g_off, __global const float *beta, uint b_off,
			     __global const float *ss, uint ss_off, __global const float *post,
			     uint post_off, __global const float *res, uint res_off, __global float *y,
			     uint y_off, int C, int HW, int G, float eps)
{
	__local float scratch[LS];
	const int grp = get_group_id(0); /* n * G + g */
	const int n = grp / G, g = grp - n * G;
	const int cpg = C / G;
	const int span = cpg * HW;
	const int l = LS == 1 ? 0 : get_local_id(0);
	__global const float *xs = x + x_off + (size_t)grp * span;
	__global float *ys = y + y_off + (size_t)grp * span;

	/* mean: eight partial sums per work-item keep the rounding error small */
	float8 acc8 = 0.0f;
	float acc = 0.0f;
	int i = l * 8;
	for (; i + 8 <= span; i += 8 * LS)
		acc8 += vload8(0, xs + i);
	for (int j = (span / 8) * 8 + l; j < span; j += LS)
		acc += xs[j];
	acc += ((acc8.s0 + acc8.s1) + (acc8.s2 + acc8.s3)) + ((acc8.s4 + acc8.s5) + (acc8.s6 + acc8.s7));
	const float mean = cu_group_sum(acc, scratch) / (float)span;

	float8 var8 = 0.0f;
	float var = 0.0f;
	for (i = l * 8; i + 8 <= span; i += 8 * LS) {
		float8 d = vload8(0, xs + i) - mean;
		var8 = fma(d, d, var8);
	}
	for (int j = (span / 8) * 8 + l; j < span; j += LS) {
		float d = xs[j] - mean;
		var = fma(d, d, var);
	}
	var += ((var8.s0 + var8.s1) + (var8.s2 + var8.s3)) + ((var8.s4 + var8.s5) + (var8.s6 + var8.s7));
	const float rstd = 1.0f / sqrt(cu_group_sum(var, scratch) / (float)span + eps);

	for (int c = 0; c < cpg; c++) {
		const int ch = g * cpg + c;
#if AFFINE
		const float a = rstd * gamma[g_off + ch], b = beta[b_off + ch];
#else
		const float a = rstd, b = 0.0f;
#endif
#if SS
		const float sc = 1.0f + ss[ss_off + (size_t)n * 2 * C + ch];
		const float sh = ss[ss_off + (size_t)n * 2 * C + C + ch];
#endif
#if POST
		const float pb = post[post_off + (size_t)n * C + ch];
#endif
		__global const float *xc = xs + (size_t)c * HW;
		__global float *yc = ys + (size_t)c * HW;
#if RES
		__global const float *rc = res + res_off + (size_t)grp * span + (size_t)c * HW;
#endif
		int j0 = l;
#if LS == 1
		for (; j0 + 8 <= HW; j0 += 8) {
			float8 v = fma(vload8(0, xc + j0) - mean, (float8)a, (float8)b);
#if SS
			v = fma(v, (float8)sc, (float8)sh);
#endif
			v = cu_act8(v, ACT);
#if POST
			v += pb;
#endif
#if RES
			v += vload8(0, rc + j0);
#endif
			vstore8(v, 0, yc + j0);
		}
#endif
		for (int j = j0; j < HW; j += LS) {
			float v = fma(xc[j] - mean, a, b);
#if SS
			v = fma(v, sc, sh);
#endif
			v = cu_act(v, ACT);
#if POST
			v += pb;
#endif
#if RES
			v += rc[j];
#endif
			yc[j] = v;
		}
	}
}

/* One softmax row, 8 keys per step through the SIMD exp (a scalar exp per
 * key made the cross-attention softmax cost ~0.5 s per SD 1.5 step):
 * y[j] = exp(v[j] - max v) / sum, v[j] = x[j] * scale (+ bias[j] when bias
 * is given). */
inline void softmax_row(__global const float *xr, __global const float *br, __global float *yr,
			int cols, float scale)
{
	float8 m8 = (float8)(-INFINITY);
	int j = 0;
	for (; j + 8 <= cols; j += 8) {
		float8 v = vload8(0, xr + j) * scale;
		if (br)
			v += vload8(0, br + j);
		m8 = fmax(m8, v);
	}
	float m = fmax(fmax(fmax(m8.s0, m8.s1), fmax(m8.s2, m8.s3)),
		       fmax(fmax(m8.s4, m8.s5), fmax(m8.s6, m8.s7)));
	for (int t = j; t < cols; t++)
		m = fmax(m, xr[t] * scale + (br ? br[t] : 0.0f));
	float8 s8 = 0.0f;
	for (j = 0; j + 8 <= cols; j += 8) {
		float8 v = vload8(0, xr + j) * scale;
		if (br)
			v += vload8(0, br + j);
		const float8 e = exp(v - m);
		vstore8(e, 0, yr + j);
		s8 += e;
	}
	float s = ((s8.s0 + s8.s1) + (s8.s2 + s8.s3)) + ((s8.s4 + s8.s5) + (s8.s6 + s8.s7));
	for (int t = j; t < cols; t++) {
		const float e = exp(xr[t] * scale + (br ? br[t] : 0.0f) - m);
		yr[t] = e;
		s += e;
	}
	const float inv = 1.0f / s;
	for (j = 0; j + 8 <= cols; j += 8)
		vstore8(vload8(0, yr + j) * inv, 0, yr + j);
	for (int t = j; t < cols; t++)
		yr[t] *= inv;
}

/* Row softmax with a scale applied to the scores first (the attention
 * scale already applied by the GEMM is 1 here unless given):
 * y[r][j] = exp(s*x[r][j] - max) / sum. One work-item per row. */
__kernel void softmax_rows_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			       int rows, int cols, float scale)
{
	int r = get_global_id(0);
	if (r >= rows)
		return;
	softmax_row(x + x_off + (size_t)r * cols, 0, y + y_off + (size_t)r * cols, cols, scale);
}

/* GroupNorm split for groups too few to keep the device busy (GroupNorm(1,
 * C) over a long sequence): group_norm_stats_f32 gives each of `chunks`
 * work-items per group a slice of the span and stores its (mean, M2) from two
 * passes over the slice; group_norm_apply_f32 combines a group's slices
 * (Chan et al.'s parallel formula) and normalises its own slice, with the
 * same epilogue as group_norm_f32. Global range: (chunks, N * G). */
__kernel void group_norm_stats_f32(__global const float *x, uint x_off, __global float *stats,
				   uint stats_off, int C, int HW, int G, int chunks)
{
	const int c = get_global_id(0), grp = get_global_id(1);
	const int span = (C / G) * HW, per = (span + chunks - 1) / chunks;
	const int lo = min(c * per, span), hi = min(lo + per, span);
	__global const float *xs = x + x_off + (size_t)grp * span;
	float8 a8 = 0.0f;
	float a = 0.0f;
	int i = lo;
	for (; i + 8 <= hi; i += 8)
		a8 += vload8(0, xs + i);
	for (; i < hi; i++)
		a += xs[i];
	a += ((a8.s0 + a8.s1) + (a8.s2 + a8.s3)) + ((a8.s4 + a8.s5) + (a8.s6 + a8.s7));
	const float mean = hi > lo ? a / (float)(hi - lo) : 0.0f;
	float8 v8 = 0.0f;
	float v = 0.0f;
	for (i = lo; i + 8 <= hi; i += 8) {
		float8 d = vload8(0, xs + i) - mean;
		v8 = fma(d, d, v8);
	}
	for (; i < hi; i++) {
		float d = xs[i] - mean;
		v = fma(d, d, v);
	}
	v += ((v8.s0 + v8.s1) + (v8.s2 + v8.s3)) + ((v8.s4 + v8.s5) + (v8.s6 + v8.s7));
	stats[stats_off + ((size_t)grp * chunks + c) * 2] = mean;
	stats[stats_off + ((size_t)grp * chunks + c) * 2 + 1] = v;
}

__kernel void group_norm_apply_f32(__global const float *x, uint x_off, __global const float *stats,
				   uint stats_off, __global const float *gamma, uint g_off,
				   __global const float *beta, uint b_off, __global const float *ss,
				   uint ss_off, __global const float *post, uint post_off,
				   __global const float *res, uint res_off, __global float *y,
				   uint y_off, int C, int HW, int G, int chunks, float eps)
{
	const int c = get_global_id(0), grp = get_global_id(1);
	const int n = grp / G, g = grp - n * G, cpg = C / G;
	const int span = cpg * HW, per = (span + chunks - 1) / chunks;
	const int lo = min(c * per, span), hi = min(lo + per, span);
	__global const float *st = stats + stats_off + (size_t)grp * chunks * 2;
	float mean = 0.0f, m2 = 0.0f;
	for (int k = 0; k < chunks; k++) { /* the mean, weighted by slice lengths */
		const int klo = min(k * per, span), khi = min(klo + per, span);
		mean += st[2 * k] * (float)(khi - klo);
	}
	mean /= (float)span;
	for (int k = 0; k < chunks; k++) {
		const int klo = min(k * per, span), khi = min(klo + per, span);
		const float d = st[2 * k] - mean;
		m2 += st[2 * k + 1] + d * d * (float)(khi - klo);
	}
	const float rstd = 1.0f / sqrt(m2 / (float)span + eps);
	__global const float *xs = x + x_off + (size_t)grp * span;
	__global float *ys = y + y_off + (size_t)grp * span;
	/* channel by channel over the slice: constants per run, no division per element */
	for (int cc = lo / HW; cc * HW < hi; cc++) {
		const int ch = g * cpg + cc, a = max(lo, cc * HW), z = min(hi, (cc + 1) * HW);
#if AFFINE
		const float sc = rstd * gamma[g_off + ch], sh = beta[b_off + ch];
#else
		const float sc = rstd, sh = 0.0f;
#endif
#if SS
		const float s1 = 1.0f + ss[ss_off + (size_t)n * 2 * C + ch];
		const float s2 = ss[ss_off + (size_t)n * 2 * C + C + ch];
#endif
#if POST
		const float pb = post[post_off + (size_t)n * C + ch];
#endif
		int i = a;
		for (; i + 8 <= z; i += 8) {
			float8 v = fma(vload8(0, xs + i) - mean, (float8)sc, (float8)sh);
#if SS
			v = fma(v, (float8)s1, (float8)s2);
#endif
			v = cu_act8(v, ACT);
#if POST
			v += pb;
#endif
#if RES
			v += vload8(0, res + res_off + (size_t)grp * span + i);
#endif
			vstore8(v, 0, ys + i);
		}
		for (; i < z; i++) {
			float v = fma(xs[i] - mean, sc, sh);
#if SS
			v = fma(v, s1, s2);
#endif
			v = cu_act(v, ACT);
#if POST
			v += pb;
#endif
#if RES
			v += res[res_off + (size_t)grp * span + i];
#endif
			ys[i] = v;
		}
	}
}

/* LayerNorm over the channels of a channel-major [N, C, P] tensor, for each
 * (n, p): y = (x - mean_c) / sqrt(var_c + eps) * gamma[c] + beta[c] (biased
 * variance, PyTorch's semantics). A work-item normalises 16 neighbouring
 * positions as one vector, so every load is contiguous.
 * Global range: (ceil(P / 16), N). */
__kernel void layer_norm_cm_f32(__global const float *x, uint x_off, __global const float *gamma,
				uint g_off, __global const float *beta, uint b_off, __global float *y,
				uint y_off, int C, int P, float eps)
{
	const int p0 = get_global_id(0) * 16, n = get_global_id(1);
	__global const float *xn = x + x_off + (size_t)n * C * P;
	__global float *yn = y + y_off + (size_t)n * C * P;
	if (p0 + 16 <= P) {
		float16 s = 0.0f;
		for (int c = 0; c < C; c++)
			s += vload16(0, xn + (size_t)c * P + p0);
		const float16 mean = s / (float)C;
		float16 v = 0.0f;
		for (int c = 0; c < C; c++) {
			const float16 d = vload16(0, xn + (size_t)c * P + p0) - mean;
			v = fma(d, d, v);
		}
		const float16 rstd = 1.0f / sqrt(v / (float)C + eps);
		for (int c = 0; c < C; c++) {
			const float16 d = vload16(0, xn + (size_t)c * P + p0) - mean;
			vstore16(fma(d * rstd, (float16)gamma[g_off + c], (float16)beta[b_off + c]), 0,
				 yn + (size_t)c * P + p0);
		}
		return;
	}
	for (int p = p0; p < P; p++) { /* the ragged last positions */
		float s = 0.0f;
		for (int c = 0; c < C; c++)
			s += xn[(size_t)c * P + p];
		const float mean = s / (float)C;
		float v = 0.0f;
		for (int c = 0; c < C; c++) {
			const float d = xn[(size_t)c * P + p] - mean;
			v = fma(d, d, v);
		}
		const float rstd = 1.0f / sqrt(v / (float)C + eps);
		for (int c = 0; c < C; c++)
			yn[(size_t)c * P + p] = fma((xn[(size_t)c * P + p] - mean) * rstd, gamma[g_off + c],
						    beta[b_off + c]);
	}
}

/* Row softmax whose scores get an additive bias per key first (attention
 * masks, already (1 - m) * -10000): rows of cols keys, row r belongs to
 * batch item r / rows_per_item; bias[item][key]. */
__kernel void softmax_bias_rows_f32(__global const float *x, uint x_off, __global const float *bias,
				    uint b_off, __global float *y, uint y_off, int rows, int cols,
				    int rows_per_item)
{
	int r = get_global_id(0);
	if (r >= rows)
		return;
	softmax_row(x + x_off + (size_t)r * cols, bias + b_off + (size_t)(r / rows_per_item) * cols,
		    y + y_off + (size_t)r * cols, cols, 1.0f);
}
