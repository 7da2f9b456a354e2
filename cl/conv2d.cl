/* Direct 2-D convolution for CPU-class devices (also every linear layer, as a
 * 1x1 convolution over [N, C, 1, 1]).
 *
 * Layouts: x is NCHW, y is NCHW. Weights are packed once at load into panels
 * of OCT = VW * OCB output channels: w[OC/OCT][IC][KH][KW][OCT] (zero-padded
 * past OC), so one work-item streams one contiguous panel; or (WPK 0, CPU-class
 * devices, weights mapped from the checkpoint) they are the file's
 * w[OC][IC][KH][KW] and a weight vector is gathered from OCT rows.
 *
 * A work-item computes OCT output channels x PX consecutive output pixels of
 * one row: PX x OCB vector accumulators, filled by FMAs of weight vectors
 * with broadcast input scalars (explicit SIMD: PoCL does not vectorise
 * scalar code across work-items). The input row segment a work-item needs is
 * loaded once per (ic, ky) with zero padding applied there.
 *
 * Epilogue, in diffusers' order: v = acc + bias[oc] + bias2[n][oc]
 * (bias2: the time-embedding projection a ResnetBlock2D adds after conv1);
 * with RES: v = res + v; with DIV: v = v / out_div (the residual add and
 * output_scale_factor, or an attention's rescale_output_factor); then act(v).
 *
 * Defines: VW (1, 2, 4, 8, 16) vector width; OCB vectors per work-item; PX
 * pixels per work-item; KH, KW, S (stride); UPS (1: the input is read
 * nearest-upsampled x2, fusing Upsample2D into the conv; 2: read with a zero
 * between neighbours along x, which turns the conv into a stride-2
 * transposed 1-D conv over flipped weights); HAS_BIAS,
 * HAS_BIAS2, RES, DIV; ACT. Global range: (ceil(OW/PX), OH, N * ceil(OC/OCT)).
 */

#define OCT (VW * OCB)
#ifndef WPK
#define WPK 1
#endif
#define XS ((PX - 1) * S + KW)

#if VW == 1
#define VT float
#define VLOAD(i, p) ((p)[i])
#define VSTORE(v, p) ((p)[0] = (v))
#else
#define VT CU_CAT(float, VW)
#define VLOAD(i, p) CU_CAT(vload, VW)(i, p)
#define VSTORE(v, p) CU_CAT(vstore, VW)(v, 0, p)
#endif


__kernel void conv2d_f32(__global const float *x, uint x_off, __global const float *w,
			 uint w_off, __global const float *bias, uint bias_off,
			 __global const float *bias2, uint bias2_off, __global const float *res,
			 uint res_off, __global float *y, uint y_off, int IC, int IH, int IW,
			 int OC, int OH, int OW, int PT, int PL, float out_div)
{
	const int ox0 = get_global_id(0) * PX;
	const int oy = get_global_id(1);
	const int n_ocb = (OC + OCT - 1) / OCT;
	const int n = get_global_id(2) / n_ocb;
	const int ocb = get_global_id(2) - n * n_ocb;
	/* the logical input size: what the conv sees after the on-the-fly resampling */
	const int LH = LOGH(IH), LW = LOGW(IW);
	__global const float *xn = x + x_off + (size_t)n * IC * IH * IW;
#if WPK
	__global const float *wp = w + w_off + (size_t)ocb * IC * KH * KW * OCT;
#else
	/* the OCT weight rows of this block (past OC: the last row, never stored) */
	size_t wrow[OCT];
	for (int l = 0; l < OCT; l++)
		wrow[l] = w_off + (size_t)min(ocb * OCT + l, OC - 1) * IC * KH * KW;
	int wt = 0; /* (ic, ky) * KW */
#endif

	VT acc[PX][OCB];
	#pragma unroll
	for (int p = 0; p < PX; p++)
		#pragma unroll
		for (int b = 0; b < OCB; b++)
			acc[p][b] = 0.0f;

	const int ix0 = ox0 * S - PL;
	for (int ic = 0; ic < IC; ic++) {
		__global const float *xc = xn + (size_t)ic * IH * IW;
#if WPK
		for (int ky = 0; ky < KH; ky++, wp += KW * OCT) {
#else
		for (int ky = 0; ky < KH; ky++, wt += KW) {
#endif
			const int iy = oy * S - PT + ky;
			if (iy < 0 || iy >= LH)
				continue;
			__global const float *xr = xc + (size_t)SRCY(iy) * IW;
			float xs[XS];
			#pragma unroll
			for (int j = 0; j < XS; j++) {
				const int ix = ix0 + j;
				xs[j] = TAKE(ix) ? xr[SRCX(ix)] : 0.0f;
			}
			#pragma unroll
			for (int kx = 0; kx < KW; kx++) {
				VT wv[OCB];
				#pragma unroll
				for (int b = 0; b < OCB; b++) {
#if WPK
					wv[b] = VLOAD(b, wp + kx * OCT);
#else
					float g[VW];
					for (int l = 0; l < VW; l++)
						g[l] = w[wrow[b * VW + l] + wt + kx];
					wv[b] = VLOAD(0, g);
#endif
				}
				#pragma unroll
				for (int p = 0; p < PX; p++) {
					const VT a = (VT)(xs[p * S + kx]);
					#pragma unroll
					for (int b = 0; b < OCB; b++)
						acc[p][b] = fma(wv[b], a, acc[p][b]);
				}
			}
		}
	}

	/* the epilogue: loops with breaks stay rolled (and cost nothing) */
	for (int b = 0; b < OCB; b++) {
		for (int p = 0; p < PX; p++) {
			float o[VW];
			const int ox = ox0 + p;
			VSTORE(acc[p][b], o);
			if (ox >= OW)
				continue;
			for (int l = 0; l < VW; l++) {
				const int oc = ocb * OCT + b * VW + l;
				if (oc >= OC)
					break;
				float v = o[l];
#if HAS_BIAS
				v += bias[bias_off + oc];
#endif
#if HAS_BIAS2
				v += bias2[bias2_off + n * OC + oc];
#endif
				const size_t at = (((size_t)n * OC + oc) * OH + oy) * OW + ox;
#if RES
				v = res[res_off + at] + v;
#endif
#if DIV
				v = v / out_div;
#endif
				y[y_off + at] = cu_act(v, ACT);
			}
		}
	}
}

/* The general convolution path (CLUNET_CONV=im2col): the input unrolled
 * into columns, then one GEMM per batch item against the packed weights,
 * then conv_epilogue_f32.
 * im2col_f32: col[n][k][p], k = (ic * KH + ky) * KW + kx, p = oy * OW + ox,
 * the input read as conv2d_f32 reads it (padding, stride, UPS resampling).
 * Global range: (OH * OW, IC * KH * KW, N). */
__kernel void im2col_f32(__global const float *x, uint x_off, __global float *col, uint col_off,
			 int IC, int IH, int IW, int OH, int OW, int PT, int PL)
{
	const int p = get_global_id(0), k = get_global_id(1), n = get_global_id(2);
	const int P = OH * OW, kx = k % KW, ky = (k / KW) % KH, ic = k / (KW * KH);
	const int LH = LOGH(IH), LW = LOGW(IW);
	if (p >= P)
		return;
	const int oy = p / OW, ox = p - oy * OW;
	const int iy = oy * S - PT + ky, ix = ox * S - PL + kx;
	float v = 0.0f;
	if (iy >= 0 && iy < LH && TAKE(ix))
		v = x[x_off + (((size_t)n * IC + ic) * IH + SRCY(iy)) * IW + SRCX(ix)];
	col[col_off + ((size_t)n * IC * KH * KW + k) * P + p] = v;
}

/* y = act(((res +) acc + bias[oc] + bias2[n][oc]) / out_div) over [N, OC, P]
 * (conv2d_f32's epilogue, in diffusers' order). Global range: (P, OC, N). */
__kernel void conv_epilogue_f32(__global const float *acc, uint acc_off,
				__global const float *bias, uint bias_off,
				__global const float *bias2, uint bias2_off,
				__global const float *res, uint res_off, __global float *y, uint y_off,
				int OC, int P, float out_div)
{
	const int p = get_global_id(0), oc = get_global_id(1), n = get_global_id(2);
	if (p >= P)
		return;
	const size_t at = ((size_t)n * OC + oc) * P + p;
	float v = acc[acc_off + at];
#if HAS_BIAS
	v += bias[bias_off + oc];
#endif
#if HAS_BIAS2
	v += bias2[bias2_off + n * OC + oc];
#endif
#if RES
	v = res[res_off + at] + v;
#endif
#if DIV
	v = v / out_div;
#endif
	y[y_off + at] = cu_act(v, ACT);
}
