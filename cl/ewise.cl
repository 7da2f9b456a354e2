/* Elementwise and data-movement kernels on contiguous float tensors.
 * No tunable defines; one work-item per output element unless noted. */

/* y = act(x) */
__kernel void act_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
		      int n, int act)
{
	int i = get_global_id(0);
	if (i < n)
		y[y_off + i] = cu_act(x[x_off + i], act);
}

/* y = a + b */
__kernel void add_f32(__global const float *a, uint a_off, __global const float *b, uint b_off,
		      __global float *y, uint y_off, int n)
{
	int i = get_global_id(0);
	if (i < n)
		y[y_off + i] = a[a_off + i] + b[b_off + i];
}

/* y = x * alpha + beta (two roundings, as torch's 2 * x - 1) */
__kernel void affine_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			 int n, float alpha, float beta)
{
	int i = get_global_id(0);
	if (i < n)
		y[y_off + i] = x[x_off + i] * alpha + beta;
}

/* y[n, ...] = x[n, ...] / d[n], `inner` elements per batch item */
__kernel void div_rows_f32(__global const float *x, uint x_off, __global const float *d,
			   uint d_off, __global float *y, uint y_off, int n, int inner)
{
	int i = get_global_id(0);
	if (i < n)
		y[y_off + i] = x[x_off + i] / d[d_off + i / inner];
}

/* Channel concatenation of NC... tensors: y[n] = [a[n] (ca), b[n] (cb)], hw per channel */
__kernel void concat_f32(__global const float *a, uint a_off, __global const float *b, uint b_off,
			 __global float *y, uint y_off, int n, int ca, int cb, int hw)
{
	int i = get_global_id(0);
	if (i >= n)
		return;
	int per = (ca + cb) * hw;
	int bn = i / per, r = i - bn * per;
	int c = r / hw;
	y[y_off + i] = c < ca ? a[a_off + bn * ca * hw + r] : b[b_off + bn * cb * hw + r - ca * hw];
}

/* Nearest-neighbour resize of NCHW planes to (oh, ow), torch's rule:
 * src = floor(dst * in / out). */
__kernel void nearest_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			  int planes, int ih, int iw, int oh, int ow, float sh, float sw)
{
	int ox = get_global_id(0), oy = get_global_id(1), pl = get_global_id(2);
	if (ox >= ow || oy >= oh || pl >= planes)
		return;
	int iy = min((int)floor((float)oy * sh), ih - 1);
	int ix = min((int)floor((float)ox * sw), iw - 1);
	y[y_off + ((size_t)pl * oh + oy) * ow + ox] = x[x_off + ((size_t)pl * ih + iy) * iw + ix];
}

/* 2x2 average pooling, stride 2 (AvgPool2d(2, 2)). */
__kernel void avgpool2_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			   int planes, int ih, int iw, int oh, int ow)
{
	int ox = get_global_id(0), oy = get_global_id(1), pl = get_global_id(2);
	if (ox >= ow || oy >= oh || pl >= planes)
		return;
	__global const float *p = x + x_off + ((size_t)pl * ih + 2 * oy) * iw + 2 * ox;
	y[y_off + ((size_t)pl * oh + oy) * ow + ox] = (p[0] + p[1] + p[iw] + p[iw + 1]) * 0.25f;
}

/* upfirdn2d (diffusers' upfirdn2d_native) with a separable FIR kernel of
 * `taps` taps k[i] * k[j]: zero-insertion upsampling by `up`, padding
 * (pad0 before, pad1 after), correlation with the flipped kernel,
 * subsampling by `down`. */
__kernel void upfirdn2d_f32(__global const float *x, uint x_off, __global const float *k,
			    uint k_off, __global float *y, uint y_off, int planes, int ih, int iw,
			    int oh, int ow, int up, int down, int pad0, int taps)
{
	int ox = get_global_id(0), oy = get_global_id(1), pl = get_global_id(2);
	if (ox >= ow || oy >= oh || pl >= planes)
		return;
	__global const float *xp = x + x_off + (size_t)pl * ih * iw;
	float acc = 0.0f;
	for (int a = 0; a < taps; a++) {
		int py = oy * down + a - pad0; /* row in the upsampled, unpadded signal */
		if (py < 0 || py % up != 0 || py / up >= ih)
			continue;
		float ka = k[k_off + taps - 1 - a];
		for (int b = 0; b < taps; b++) {
			int px = ox * down + b - pad0;
			if (px < 0 || px % up != 0 || px / up >= iw)
				continue;
			acc += xp[(py / up) * iw + px / up] * (ka * k[k_off + taps - 1 - b]);
		}
	}
	y[y_off + ((size_t)pl * oh + oy) * ow + ox] = acc;
}

/* Row gather: y[r] = table[idx[r]] (nn.Embedding); rows of `dim`. */
__kernel void embed_f32(__global const int *idx, uint idx_off, __global const float *table,
			uint t_off, __global float *y, uint y_off, int rows, int dim)
{
	int j = get_global_id(0), r = get_global_id(1);
	if (j >= dim || r >= rows)
		return;
	y[y_off + (size_t)r * dim + j] = table[t_off + (size_t)idx[idx_off + r] * dim + j];
}

/* diffusers get_timestep_embedding: t[n] -> [sin | cos] (or [cos | sin] when
 * flip), freq_i = exp(-ln(10000) * i / (nhalf - shift)), computed in float32
 * in the same order as torch; an odd dim gets a zero last column. */
__kernel void timestep_embed_f32(__global const float *t, uint t_off, __global float *y,
				 uint y_off, int rows, int dim, int flip, float shift)
{
	int j = get_global_id(0), r = get_global_id(1);
	if (j >= dim || r >= rows)
		return;
	int nhalf = dim / 2;
	float v = 0.0f;
	if (j < 2 * nhalf) {
		int second = j >= nhalf;
		int i = second ? j - nhalf : j;
		float e = (-9.2103403719761836f * (float)i) / ((float)nhalf - shift);
		float arg = t[t_off + r] * exp(e);
		int use_cos = flip ? !second : second;
		v = use_cos ? cos(arg) : sin(arg);
	}
	y[y_off + (size_t)r * dim + j] = v;
}

/* GaussianFourierProjection: x = log(t) if use_log; p = ((x * w) * 2) * pi;
 * [sin | cos] or [cos | sin] when flip. w has `nhalf` entries. */
__kernel void fourier_embed_f32(__global const float *t, uint t_off, __global const float *w,
				uint w_off, __global float *y, uint y_off, int rows, int nhalf,
				int use_log, int flip)
{
	int j = get_global_id(0), r = get_global_id(1);
	if (j >= 2 * nhalf || r >= rows)
		return;
	int second = j >= nhalf;
	int i = second ? j - nhalf : j;
	float x = t[t_off + r];
	if (use_log)
		x = log(x);
	float p = ((x * w[w_off + i]) * 2.0f) * 3.14159265358979323846f;
	int use_cos = flip ? !second : second;
	y[y_off + (size_t)r * 2 * nhalf + j] = use_cos ? cos(p) : sin(p);
}

/* torch's "reflect" padding index: -1 -> 1, n -> n - 2 (needs pad < n). */
inline int cu_reflect(int i, int n)
{
	return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

/* The 1-D resamplers of diffusers' unet_1d_blocks (Downsample1d /
 * Upsample1d, depthwise over rows of length n_in, `taps` coefficients k):
 *   down: reflect-pad P = taps/2 - 1, correlate, stride 2:
 *         y[o] = sum_t k[t] x[reflect(2o + t - P)]
 *   up:   reflect-pad Q = (P + 1) / 2, then conv_transpose1d with stride 2
 *         and padding 2P + 1: y[o] = sum_j k[o + 2P + 1 - 2j] xpad[j] */
__kernel void resample1d_f32(__global const float *x, uint x_off, __global const float *k,
			     uint k_off, __global float *y, uint y_off, int rows, int n_in, int n_out,
			     int taps, int up)
{
	int o = get_global_id(0), r = get_global_id(1);
	if (o >= n_out || r >= rows)
		return;
	__global const float *xr = x + x_off + (size_t)r * n_in;
	const int p = taps / 2 - 1;
	float acc = 0.0f;
	if (!up) {
		for (int t = 0; t < taps; t++)
			acc += k[k_off + t] * xr[cu_reflect(2 * o + t - p, n_in)];
	} else {
		const int q = (p + 1) / 2, pad = 2 * p + 1;
		/* j with 0 <= o + pad - 2j < taps, over the padded row of n_in + 2q */
		int j0 = (o + pad - taps + 2) / 2, j1 = (o + pad) / 2;
		if (j0 < 0)
			j0 = 0;
		if (j1 > n_in + 2 * q - 1)
			j1 = n_in + 2 * q - 1;
		for (int j = j0; j <= j1; j++)
			acc += k[k_off + o + pad - 2 * j] * xr[cu_reflect(j - q, n_in)];
	}
	y[y_off + (size_t)r * n_out + o] = acc;
}

/* y[n][c][l] = x[n][c] for l < len: a per-item vector repeated along a length. */
__kernel void repeat_len_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			     int rows, int len)
{
	int l = get_global_id(0), r = get_global_id(1);
	if (l < len && r < rows)
		y[y_off + (size_t)r * len + l] = x[x_off + r];
}

/* GEGLU on channel-major [N, 2F, P]: y[n][f][p] = x[n][f][p] * gelu(x[n][F + f][p]),
 * the first half the value, the second the gate (exact-erf GELU). A work-item
 * takes 8 consecutive outputs through the SIMD erf (a scalar erf per element
 * cost ~1 s per SD 1.5 step). Global range: ceil(n / 8). */
__kernel void geglu_f32(__global const float *x, uint x_off, __global float *y, uint y_off, int n,
			int nf, int np)
{
	const int i = get_global_id(0) * 8;
	if (i >= n)
		return;
	const int per = nf * np, b = i / per, r = i - b * per;
	__global const float *xb = x + x_off + (size_t)b * 2 * per;
	if (i + 8 <= n && r + 8 <= per) {
		const float8 v = vload8(0, xb + r), gt = vload8(0, xb + per + r);
		vstore8(v * cu_act8(gt, CU_ACT_GELU), 0, y + y_off + i);
		return;
	}
	for (int j = i; j < i + 8 && j < n; j++) { /* a batch boundary or the end */
		const int bj = j / per, rj = j - bj * per;
		__global const float *xj = x + x_off + (size_t)bj * 2 * per;
		y[y_off + j] = xj[rj] * cu_act(xj[per + rj], CU_ACT_GELU);
	}
}

/* Mean over the last dimension: [R, L] -> [R]. */
__kernel void mean_last_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			    int rows, int len)
{
	int r = get_global_id(0);
	if (r >= rows)
		return;
	__global const float *xr = x + x_off + (size_t)r * len;
	/* eight partial sums: SIMD, and less rounding than one running sum */
	float8 s8 = 0.0f;
	int j = 0;
	for (; j + 8 <= len; j += 8)
		s8 += vload8(0, xr + j);
	float s = 0.0f;
	for (; j < len; j++)
		s += xr[j];
	s += ((s8.s0 + s8.s1) + (s8.s2 + s8.s3)) + ((s8.s4 + s8.s5) + (s8.s6 + s8.s7));
	y[y_off + r] = s / (float)len;
}

/* Concatenation along the last dimension: [R, La] + [R, Lb] -> [R, La + Lb]. */
__kernel void concat_last_f32(__global const float *a, uint a_off, __global const float *b,
			      uint b_off, __global float *y, uint y_off, int rows, int la, int lb)
{
	int j = get_global_id(0), r = get_global_id(1);
	if (j >= la + lb || r >= rows)
		return;
	y[y_off + (size_t)r * (la + lb) + j] =
		j < la ? a[a_off + (size_t)r * la + j] : b[b_off + (size_t)r * lb + j - la];
}

/* Channels [c0, c0 + nc) of [N, C, P]: y[n][c][p] = x[n][c0 + c][p]. */
__kernel void slice_channels_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
				 int total, int ch, int c0, int nc, int np)
{
	int i = get_global_id(0);
	if (i >= total)
		return;
	int per = nc * np, n = i / per, r = i - n * per;
	y[y_off + i] = x[x_off + (size_t)n * ch * np + (size_t)c0 * np + r];
}
