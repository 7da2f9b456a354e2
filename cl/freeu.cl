/* FreeU (diffusers utils/torch_utils.py apply_freeu / fourier_filter). */

/* x[n][c] *= f for c < nch, in place semantics on a copy: y = x with the
 * first nch channels of every item scaled. */
__kernel void scale_channels_f32(__global const float *x, uint x_off, __global float *y,
				 uint y_off, int total, int plane, int ch, int nch, float f)
{
	int i = get_global_id(0);
	if (i >= total)
		return;
	int c = (i / plane) % ch;
	float v = x[x_off + i];
	y[y_off + i] = c < nch ? v * f : v;
}

/* fourier_filter with threshold 1, computed directly: the box the filter
 * scales holds the frequencies (kh, kw) in {0, -1} x {0, -1}, so
 *   y = x + (s - 1) Re(P x),   P x = (1/HW) sum_k X[k] e^{2 pi i k.pos}
 * needs only those four DFT coefficients of each plane. One work-item per
 * plane. H or W of 1 (or 2, where {0, -1} is the whole axis) need no special
 * case beyond not counting a frequency twice when H == 1 (W == 1). */
__kernel void freeu_direct_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			       int planes, int h, int w, float s)
{
	int pl = get_global_id(0);
	if (pl >= planes)
		return;
	__global const float *xp = x + x_off + (size_t)pl * h * w;
	__global float *yp = y + y_off + (size_t)pl * h * w;
	const float fh = 2.0f / (float)h, fw = 2.0f / (float)w;
	float s00 = 0.0f, c10 = 0.0f, s10 = 0.0f, c01 = 0.0f, s01 = 0.0f, c11 = 0.0f, s11 = 0.0f;
	for (int iy = 0; iy < h; iy++) {
		float ca = cospi(fh * (float)iy), sa = sinpi(fh * (float)iy);
		float rs = 0.0f, rc = 0.0f, rsn = 0.0f;
		for (int ix = 0; ix < w; ix++) {
			float v = xp[iy * w + ix];
			float cb = cospi(fw * (float)ix), sb = sinpi(fw * (float)ix);
			rs += v;
			rc += v * cb;
			rsn += v * sb;
		}
		s00 += rs;
		c10 += rs * ca;
		s10 += rs * sa;
		c01 += rc;
		s01 += rsn;
		/* e^{i(a+b)} = (ca + i sa)(cb + i sb) */
		c11 += ca * rc - sa * rsn;
		s11 += sa * rc + ca * rsn;
	}
	const int two_h = h > 1, two_w = w > 1;
	const float k = (s - 1.0f) / (float)(h * w);
	for (int iy = 0; iy < h; iy++) {
		float ca = cospi(fh * (float)iy), sa = sinpi(fh * (float)iy);
		for (int ix = 0; ix < w; ix++) {
			float cb = cospi(fw * (float)ix), sb = sinpi(fw * (float)ix);
			/* Re(X e^{-i theta}) = Xr cos(theta) + Xi sin(theta) */
			float p = s00;
			if (two_h)
				p += c10 * ca + s10 * sa;
			if (two_w)
				p += c01 * cb + s01 * sb;
			if (two_h && two_w)
				p += c11 * (ca * cb - sa * sb) + s11 * (sa * cb + ca * sb);
			yp[iy * w + ix] = xp[iy * w + ix] + k * p;
		}
	}
}

/* The clFFT path: real planes -> interleaved complex scratch (offset 0). */
__kernel void freeu_pack_f32(__global const float *x, uint x_off, __global float2 *z, int total)
{
	int i = get_global_id(0);
	if (i >= total)
		return;
	z[i] = (float2)(x[x_off + i], 0.0f);
}

/* Scales the centred box [n/2 - t, n/2 + t) of the shifted spectrum, with
 * Python's slice rules (a negative start counts from the end, a stop past
 * the end clamps): shifted index i holds frequency (i - n/2) mod n. */
static int py_start(int v, int n)
{
	if (v < 0)
		v += n;
	return v < 0 ? 0 : v;
}

__kernel void freeu_mask_f32(__global float2 *z, int planes, int h, int w, int t, float s)
{
	int ix = get_global_id(0), iy = get_global_id(1), pl = get_global_id(2);
	if (ix >= w || iy >= h || pl >= planes)
		return;
	/* shifted position of frequency iy: (iy + h/2) mod h */
	int sy = (iy + h / 2) % h, sx = (ix + w / 2) % w;
	int lo_y = py_start(h / 2 - t, h), hi_y = min(h / 2 + t, h);
	int lo_x = py_start(w / 2 - t, w), hi_x = min(w / 2 + t, w);
	if (sy >= lo_y && sy < hi_y && sx >= lo_x && sx < hi_x)
		z[((size_t)pl * h + iy) * w + ix] *= s;
}

__kernel void freeu_unpack_f32(__global const float2 *z, __global float *y, uint y_off, int total)
{
	int i = get_global_id(0);
	if (i >= total)
		return;
	y[y_off + i] = z[i].x;
}
