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
		for (int j = l; j < HW; j += LS) {
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

/* Row softmax with a scale applied to the scores first (the attention
 * scale already applied by the GEMM is 1 here unless given):
 * y[r][j] = exp(s*x[r][j] - max) / sum. One work-item per row. */
__kernel void softmax_rows_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			       int rows, int cols, float scale)
{
	int r = get_global_id(0);
	if (r >= rows)
		return;
	__global const float *xr = x + x_off + (size_t)r * cols;
	__global float *yr = y + y_off + (size_t)r * cols;
	float m = -INFINITY;
	for (int j = 0; j < cols; j++)
		m = fmax(m, xr[j] * scale);
	float s = 0.0f;
	for (int j = 0; j < cols; j++) {
		float e = exp(xr[j] * scale - m);
		yr[j] = e;
		s += e;
	}
	float inv = 1.0f / s;
	for (int j = 0; j < cols; j++)
		yr[j] *= inv;
}
