/* Pixel-vector direct convolution for CPU-class devices, stride 1 or 2.
 *
 * The input arrives padded (pad2d_f32 below): a plane per (n, ic) of CS
 * floats holding PH rows of PW, then zeros up to the end of the last tile's
 * reach (CS chosen with an odd number of 64-byte lines, so that planes do
 * not share cache sets). Output pixels are numbered over the padded width,
 * q = oy * PW + ox (ox < OW real, the KW - 1 columns after them garbage that
 * is never stored), so the input a tap (ky, kx) needs for 16 consecutive
 * outputs is 16 consecutive floats at q + ky * PW + kx: one vector load, no
 * bounds tests. A work-item owns PV vectors of VW pixels x OCR output
 * channels (PV x OCR accumulators: 3 x 8 float16 fill 24 of the 32 AVX-512
 * registers, 2 x 6 float8 12 of AVX2's 16) and
 * broadcasts each weight scalar; weights are packed [OC/OCR][IC][KH][KW][OCR]
 * (WPK 1) or read where the checkpoint has them, [OC][IC][KH][KW] (WPK 0:
 * the weight file mapped into the device without a copy; OCR rows streamed
 * side by side, the rows past OC clamped to the last one, never stored).
 * A tile is PV vectors at q0, q0 + VW, ... (ROWS 0), or (ROWS r > 0) r rows
 * of PV / r vectors each, starting at a multiple of PV / r vectors in a row:
 * with OW a multiple of the tile's width no vector covers the KW - 1 garbage
 * columns (11 % of the work at 16x16, 20 % at 8x8), and the taps of a column
 * of rows read the same input rows (ky + row), which the compiler loads once:
 * 4 rows of one vector read 6 x KW vectors per input channel, not 4 x 3 x KW
 * (the AVX-512-class default for 3x3). ROWS <= OH.
 * Global range: (ceil(OC/OCR), tiles, N), dimension 0 the output
 * channel blocks, so the work-items that run together share their input tile.
 * Defines: VW (8 or 16), OCR, PV, ROWS, KH, KW, S (1 or 2), ORD (1: dimensions 0 and 1
 * swapped), WPK,
 * HAS_BIAS, HAS_BIAS2, RES,
 * DIV, ACT as in conv2d.cl (v = acc + bias + bias2; res + v; / out_div;
 * act). pad2d_f32 needs only UPS (0; 1 nearest x2; 2 zero-inserted along x).
 * GEGLU (WPK 0 only): the layer is diffusers' GEGLU projection with 2 OC
 * outputs, a work-item's first OCR/2 rows come from the first half and the
 * rest from the second, and the epilogue writes (x + b) * gelu(g + b') to OC
 * channels (no bias2, RES, DIV or ACT then).
 * Every program built from this file defines all of them but GEGLU. */
#ifndef GEGLU
#define GEGLU 0
#endif
#if GEGLU
#define OCO (OCR / 2) /* output channels per work-item */
#else
#define OCO OCR
#endif


#ifndef VW
#define VW 16
#endif
#ifndef WPK
#define WPK 1
#endif
#ifndef ROWS
#define ROWS 0
#endif
#define PVT (VW * PV)
#define VT CU_CAT(float, VW)
#define VSTOREN CU_CAT(vstore, VW)

/* Where tap (ky, kx) of output q reads, relative to q. Stride 2 reads one of
 * the four phase planes (row parity, column parity) pad2d_f32 made, each PS
 * floats with rows of PW = half the padded width. */
#if S == 2
#define TAP(ky, kx) ((((ky) & 1) * 2 + ((kx) & 1)) * PS + ((ky) >> 1) * PW + ((kx) >> 1))
#else
#define TAP(ky, kx) ((ky) * PW + (kx))
#endif

__kernel void conv_pv_f32(__global const float *x, uint x_off, __global const float *w,
			  uint w_off, __global const float *bias, uint bias_off,
			  __global const float *bias2, uint bias2_off, __global const float *res,
			  uint res_off, __global float *y, uint y_off, int IC, int CS, int PW, int PS,
			  int OC, int OH, int OW, int Q, float out_div)
{
#if ORD == 2
	/* groups of TG pixel tiles x every channel block, the tiles fastest: a
	 * channel block's weights serve TG tiles while they are in cache, a tile's
	 * input serves every channel block while it is in L2 */
	const int nb = (OC + OCO - 1) / OCO, g = get_global_id(0), tg = g / (TG * nb);
	const int r = g - tg * TG * nb, ocb = r / TG, t = tg * TG + r % TG;
	const int n = get_global_id(1);
#elif ORD /* tuning: the pixel tiles along dimension 0 */
	const int ocb = get_global_id(1), t = get_global_id(0), n = get_global_id(2);
#else
	const int ocb = get_global_id(0), t = get_global_id(1), n = get_global_id(2);
#endif
	/* q0 + QOFF(p): where vector p of the tile starts (over the padded width;
	 * in Q order a constant offset from q0, so one pointer serves them all) */
	int q0, live[PV];
#if ROWS
#define PX (PV / ROWS)
#define QOFF(p) (((p) / PX) * PW + ((p) % PX) * VW)
	const int tx = (OW + PX * VW - 1) / (PX * VW), ty = t / tx;
	/* the last row tile moved up to end at the last row: the rows it shares
	 * with the tile before are that tile's to store */
	const int row0 = min(ty * ROWS, OH - ROWS);
	if (ty * ROWS >= OH)
		return;
	q0 = row0 * PW + (t - ty * tx) * PX * VW;
	#pragma unroll
	for (int p = 0; p < PV; p++)
		live[p] = row0 + p / PX >= ty * ROWS;
#else
#define QOFF(p) ((p) * VW)
	q0 = t * PVT;
	if (q0 >= Q)
		return;
	#pragma unroll
	for (int p = 0; p < PV; p++)
		live[p] = q0 + p * VW < Q;
#endif
	__global const float *xn = x + x_off + (size_t)n * IC * CS + q0;
#if WPK
	__global const float *wp = w + w_off + (size_t)ocb * IC * KH * KW * OCR;
#define W_AT(o) wp[o]
#define W_NEXT() (wp += OCR)
#else
	__global const float *wr[OCR];
	#pragma unroll
	for (int o = 0; o < OCR; o++) {
#if GEGLU /* rows of the first half, then the same rows of the second */
		const int row = (o < OCO ? 0 : OC) + min(ocb * OCO + o % OCO, OC - 1);
#else
		const int row = min(ocb * OCR + o, OC - 1);
#endif
		wr[o] = w + w_off + (size_t)row * IC * KH * KW;
	}
	int wt = 0;
#define W_AT(o) wr[o][wt]
#define W_NEXT() (wt++)
#endif

	VT acc[PV][OCR];
	#pragma unroll
	for (int p = 0; p < PV; p++)
		#pragma unroll
		for (int o = 0; o < OCR; o++)
			acc[p][o] = 0.0f;

	{
		for (int ic = 0; ic < IC; ic++) {
			__global const float *xc = xn + (size_t)ic * CS;
			#pragma unroll
			for (int ky = 0; ky < KH; ky++) {
				#pragma unroll
				for (int kx = 0; kx < KW; kx++, W_NEXT()) {
					VT xv[PV];
					#pragma unroll
					for (int p = 0; p < PV; p++)
						xv[p] = CU_VLOADU(VW, xc + TAP(ky, kx) + QOFF(p));
					#pragma unroll
					for (int o = 0; o < OCR; o++) {
						const VT wv = (VT)(W_AT(o));
						#pragma unroll
						for (int p = 0; p < PV; p++)
							acc[p][o] = fma(xv[p], wv, acc[p][o]);
					}
				}
			}
		}
	}

	/* the epilogue (rolled: loops with breaks cost nothing here) */
	for (int p = 0; p < PV; p++) {
		const int qa = q0 + QOFF(p);
		if (!live[p])
			continue;
		int oy = qa / PW, ox = qa - oy * PW;
#if GEGLU
		if (ox + VW <= OW && oy < OH) {
			for (int o = 0; o < OCO; o++) {
				const int oc = ocb * OCO + o;
				if (oc >= OC)
					break;
				const VT xv = acc[p][o] + bias[bias_off + oc];
				const VT gv = acc[p][o + OCO] + bias[bias_off + OC + oc];
				VSTOREN(xv * CU_CAT(cu_act, VW)(gv, CU_ACT_GELU), 0,
					y + y_off + ((size_t)n * OC + oc) * OH * OW + oy * OW + ox);
			}
			continue;
		}
		for (int l = 0; l < VW; l++) {
			const int q = qa + l, yy = q / PW, xx = q - yy * PW;
			if (q >= Q || xx >= OW || yy >= OH || (ROWS && yy != oy))
				continue; /* (a row tile owns only its own row's pixels) */
			for (int o = 0; o < OCO; o++) {
				const int oc = ocb * OCO + o;
				if (oc >= OC)
					break;
				float xs[VW], gs[VW];
				VSTOREN(acc[p][o], 0, xs);
				VSTOREN(acc[p][o + OCO], 0, gs);
				y[y_off + ((size_t)n * OC + oc) * OH * OW + yy * OW + xx] =
					(xs[l] + bias[bias_off + oc]) *
					cu_act(gs[l] + bias[bias_off + OC + oc], CU_ACT_GELU);
			}
		}
#else
		/* the whole vector in one output row: vector epilogue, vector stores;
		 * else lane by lane, each lane's output row and column worked out once */
		const int whole = ox + VW <= OW && oy < OH;
		int ys[VW];
		for (int l = 0; !whole && l < VW; l++) {
			ys[l] = (qa + l < Q && ox < OW && oy < OH) ? oy * OW + ox : -1;
			if (++ox == PW) { /* a row tile owns only its own row's pixels */
				ox = 0;
				oy = ROWS ? OH : oy + 1;
			}
		}
		for (int o = 0; o < OCR; o++) {
			const int oc = ocb * OCR + o;
			if (oc >= OC)
				break;
			float add = 0.0f;
#if HAS_BIAS
			add += bias[bias_off + oc];
#endif
#if HAS_BIAS2
			add += bias2[bias2_off + n * OC + oc];
#endif
			const size_t plane = ((size_t)n * OC + oc) * OH * OW;
			if (whole) {
				const size_t at = plane + oy * OW + ox;
				VT v = acc[p][o] + add;
#if RES
				v = CU_VLOADU(VW, res + res_off + at) + v;
#endif
#if DIV
				v = v / out_div;
#endif
				VSTOREN(CU_CAT(cu_act, VW)(v, ACT), 0, y + y_off + at);
				continue;
			}
			float v16[VW];
			VSTOREN(acc[p][o], 0, v16);
			for (int l = 0; l < VW; l++) {
				if (ys[l] < 0)
					continue;
				const size_t at = plane + ys[l];
				float v = v16[l] + add;
#if RES
				v = res[res_off + at] + v;
#endif
#if DIV
				v = v / out_div;
#endif
				y[y_off + at] = cu_act(v, ACT);
			}
		}
#endif
	}
}

/* The padded (and, with UPS, resampled) input of conv_pv_f32:
 * y[n][c][q], q < CS: row q / PW, column q % PW of the padded logical input
 * (nearest x2 with UPS 1, zero-inserted along x with UPS 2, as conv2d_f32
 * reads them), zero in the padding and the slack. With S 2 the plane is
 * split into four phase planes of PS floats (even rows even columns, even
 * rows odd columns, odd even, odd odd), each with rows of PW = half the
 * padded width: a stride-2 tap then reads consecutive floats. A work-item
 * writes one row of one phase plane (no divisions per element). Global
 * range: (ceil(PS / PW), S * S * C, N). */
__kernel void pad2d_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			int C, int IH, int IW, int PT, int PL, int PW, int PHW, int PS, int CS)
{
	const int ry = get_global_id(0), c = get_global_id(1) / (S * S);
	const int ph = get_global_id(1) - c * (S * S), n = get_global_id(2);
	const int LH = LOGH(IH), LW = LOGW(IW);
	__global const float *xc = x + x_off + ((size_t)n * C + c) * IH * IW;
	const int r0 = ry * PW, r1 = min(r0 + PW, PS);
	__global float *yr = y + y_off + ((size_t)n * C + c) * CS + (size_t)ph * PS;
#if S == 2
	const int py = 2 * ry + (ph >> 1), px0 = ph & 1;
#else
	const int py = ry, px0 = 0;
#endif
	const int iy = py - PT;
	if (r0 >= PHW || iy < 0 || iy >= LH) { /* a padding row, or the slack */
		for (int r = r0; r < r1; r++)
			yr[r] = 0.0f;
		return;
	}
	__global const float *xr = xc + (size_t)SRCY(iy) * IW;
	for (int r = r0, ix = px0 - PL; r < r1; r++, ix += S)
		yr[r] = TAKE(ix) ? xr[SRCX(ix)] : 0.0f;
}
