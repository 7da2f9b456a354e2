/* Attention without a score matrix (online softmax), for long sequences.
 *
 * attention_fused_f32: per (batch * head) b, queries q[b][e][i] (channel-
 * major, e < D, i < LQ), keys and values token-major kt[b][j][e], vt[b][j][e]
 * (j < LK); out[b][e][i] = sum_j softmax_j(scale * q_i . k_j) v_j[e].
 * A work-item owns QB queries and walks all keys in blocks of KB: the block's
 * scores, one rescale of the running sum and accumulators per block, then the
 * weighted values. Scores are never stored. With MASK, mask[b / heads][j] is
 * added to every score of key j (attention masks as additive biases).
 * Output channel e of b starts at out[(b D + e) YP]: rows YP >= LQ apart
 * (LQ, or the padded pitch of the convolution that reads them, which is not
 * a power of two: rows 16 KB apart share a few cache sets).
 * Defines: D (head dim), QB, KB, MASK.
 *
 * transpose_f32: [batch][R][C] -> [batch][C][R]. */

__kernel void transpose_f32(__global const float *x, uint x_off, __global float *y, uint y_off,
			    int batch, int rows, int cols)
{
	int c = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
	if (c >= cols || r >= rows || b >= batch)
		return;
	y[y_off + ((size_t)b * cols + c) * rows + r] = x[x_off + ((size_t)b * rows + r) * cols + c];
}

/* The YP - LQ floats after each of batch-head b's D output rows: zeros
 * (written by the first query block's work-item), so that a padded output
 * holds no stale values. */
#define ZERO_ROW_TAILS()                                                        \
	do {                                                                    \
		if (get_global_id(0) == 0)                                      \
			for (int e_ = 0; e_ < D; e_++)                          \
				for (int i_ = LQ; i_ < YP; i_++)                \
					out[out_off + ((size_t)b * D + e_) * YP + i_] = 0.0f; \
	} while (0)

__kernel void attention_fused_f32(__global const float *q, uint q_off, __global const float *kt,
				  uint kt_off, __global const float *vt, uint vt_off,
				  __global const float *mask, uint m_off, __global float *out,
				  uint out_off, int LQ, int YP, int LK, int heads,
				  float scale)
{
	const int i0 = get_global_id(0) * QB, b = get_global_id(1);
	__global const float *qb = q + q_off + (size_t)b * D * LQ;
	__global const float *kb = kt + kt_off + (size_t)b * LK * D;
	__global const float *vb = vt + vt_off + (size_t)b * LK * D;
	float qv[QB][D], acc[QB][D], m[QB], l[QB];

	#pragma unroll
	for (int r = 0; r < QB; r++) {
		const int i = min(i0 + r, LQ - 1); /* extra rows compute, never store */
		for (int e = 0; e < D; e++) {
			qv[r][e] = qb[(size_t)e * LQ + i] * scale;
			acc[r][e] = 0.0f;
		}
		m[r] = -INFINITY;
		l[r] = 0.0f;
	}
	for (int j0 = 0; j0 < LK; j0 += KB) {
		float s[QB][KB], bmax[QB];
		const int nk = min(KB, LK - j0);
		#pragma unroll
		for (int r = 0; r < QB; r++)
			bmax[r] = -INFINITY;
		for (int jj = 0; jj < KB; jj++) {
			if (jj >= nk) {
				#pragma unroll
				for (int r = 0; r < QB; r++)
					s[r][jj] = -INFINITY;
				continue;
			}
			__global const float *kj = kb + (size_t)(j0 + jj) * D;
			float dot[QB];
			#pragma unroll
			for (int r = 0; r < QB; r++)
				dot[r] = 0.0f;
			for (int e = 0; e < D; e++) {
				const float kv = kj[e];
				#pragma unroll
				for (int r = 0; r < QB; r++)
					dot[r] = fma(qv[r][e], kv, dot[r]);
			}
#if MASK
			const float mb = mask[m_off + (size_t)(b / heads) * LK + j0 + jj];
#else
			const float mb = 0.0f;
#endif
			#pragma unroll
			for (int r = 0; r < QB; r++) {
				s[r][jj] = dot[r] + mb;
				bmax[r] = fmax(bmax[r], s[r][jj]);
			}
		}
		#pragma unroll
		for (int r = 0; r < QB; r++) {
			const float mnew = fmax(m[r], bmax[r]);
			const float keep = exp(m[r] - mnew); /* 0 on the first block */
			float psum = 0.0f;
			for (int jj = 0; jj < KB; jj++) {
				s[r][jj] = exp(s[r][jj] - mnew);
				psum += s[r][jj];
			}
			l[r] = l[r] * keep + psum;
			m[r] = mnew;
			for (int e = 0; e < D; e++)
				acc[r][e] *= keep;
		}
		for (int jj = 0; jj < nk; jj++) {
			__global const float *vj = vb + (size_t)(j0 + jj) * D;
			for (int e = 0; e < D; e++) {
				const float vv = vj[e];
				#pragma unroll
				for (int r = 0; r < QB; r++)
					acc[r][e] = fma(s[r][jj], vv, acc[r][e]);
			}
		}
	}
	for (int r = 0; r < QB; r++) {
		if (i0 + r >= LQ)
			break;
		const float inv = 1.0f / l[r];
		for (int e = 0; e < D; e++)
			out[out_off + ((size_t)b * D + e) * YP + i0 + r] = acc[r][e] * inv;
	}
	ZERO_ROW_TAILS();
}

/* The same with explicit SIMD (CPU-class devices; VE must divide D):
 * scores of 16 keys at once as a float16, from channel-major keys
 * k[b][e][j] (one vector load per e, shared by the QB queries); the values
 * token-major vt[b][j][e], accumulated in VE-wide vectors along e. */
#ifdef VE
#define VEC CU_CAT(float, VE)
#define VLOADE CU_CAT(vload, VE)
#define NV (D / VE)

__kernel void attention_fused_v_f32(__global const float *q, uint q_off, __global const float *k,
				    uint k_off, __global const float *vt, uint vt_off,
				    __global const float *mask, uint m_off, __global float *out,
				    uint out_off, int LQ, int YP, int LK, int heads,
				    float scale)
{
	const int i0 = get_global_id(0) * QB, b = get_global_id(1);
	__global const float *qb = q + q_off + (size_t)b * D * LQ;
	__global const float *kb = k + k_off + (size_t)b * D * LK;
	__global const float *vb = vt + vt_off + (size_t)b * LK * D;
	float qv[QB][D], m[QB], l[QB];
	VEC acc[QB][NV];

	#pragma unroll
	for (int r = 0; r < QB; r++) {
		const int i = min(i0 + r, LQ - 1);
		for (int e = 0; e < D; e++)
			qv[r][e] = qb[(size_t)e * LQ + i] * scale;
		#pragma unroll
		for (int c = 0; c < NV; c++)
			acc[r][c] = 0.0f;
		m[r] = -INFINITY;
		l[r] = 0.0f;
	}
	for (int j0 = 0; j0 < LK; j0 += 16) {
		const int full = j0 + 16 <= LK;
		float16 s[QB];
		#pragma unroll
		for (int r = 0; r < QB; r++)
			s[r] = 0.0f;
		for (int e = 0; e < D; e++) {
			__global const float *ke = kb + (size_t)e * LK + j0;
			float16 kv;
			if (full) {
				kv = vload16(0, ke);
			} else {
				float t[16];
				for (int x = 0; x < 16; x++)
					t[x] = j0 + x < LK ? ke[x] : 0.0f;
				kv = vload16(0, t);
			}
			#pragma unroll
			for (int r = 0; r < QB; r++)
				s[r] = fma((float16)(qv[r][e]), kv, s[r]);
		}
#if MASK
		{
			__global const float *mr = mask + m_off + (size_t)(b / heads) * LK + j0;
			float16 mv;
			if (full) {
				mv = vload16(0, mr);
			} else {
				float t[16];
				for (int x = 0; x < 16; x++)
					t[x] = j0 + x < LK ? mr[x] : 0.0f;
				mv = vload16(0, t);
			}
			#pragma unroll
			for (int r = 0; r < QB; r++)
				s[r] += mv;
		}
#endif
		if (!full) { /* keys past the end take no weight */
			const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
			#pragma unroll
			for (int r = 0; r < QB; r++)
				s[r] = select(s[r], (float16)(-INFINITY), lane >= (int16)(LK - j0));
		}
		#pragma unroll
		for (int r = 0; r < QB; r++) {
			float8 h8 = fmax(s[r].lo, s[r].hi);
			float4 h4 = fmax(h8.lo, h8.hi);
			float2 h2 = fmax(h4.lo, h4.hi);
			const float mnew = fmax(m[r], fmax(h2.x, h2.y));
			const float keep = exp(m[r] - mnew);
			s[r] = exp(s[r] - mnew);
			h8 = s[r].lo + s[r].hi;
			h4 = h8.lo + h8.hi;
			h2 = h4.lo + h4.hi;
			l[r] = l[r] * keep + (h2.x + h2.y);
			m[r] = mnew;
			#pragma unroll
			for (int c = 0; c < NV; c++)
				acc[r][c] *= keep;
		}
		{
			const int nk = full ? 16 : LK - j0;
			float p[QB][16];
			#pragma unroll
			for (int r = 0; r < QB; r++)
				vstore16(s[r], 0, p[r]);
			for (int jj = 0; jj < nk; jj++) {
				__global const float *vj = vb + (size_t)(j0 + jj) * D;
				#pragma unroll
				for (int c = 0; c < NV; c++) {
					const VEC vv = VLOADE(c, vj);
					#pragma unroll
					for (int r = 0; r < QB; r++)
						acc[r][c] = fma((VEC)(p[r][jj]), vv, acc[r][c]);
				}
			}
		}
	}
	for (int r = 0; r < QB; r++) {
		if (i0 + r >= LQ)
			break;
		const float inv = 1.0f / l[r];
		float o[D];
		for (int c = 0; c < NV; c++)
			CU_CAT(vstore, VE)(acc[r][c] * inv, c, o);
		for (int e = 0; e < D; e++)
			out[out_off + ((size_t)b * D + e) * YP + i0 + r] = o[e];
	}
	ZERO_ROW_TAILS();
}
#endif

/* Queries in the SIMD lanes (CPU-class devices, LQ >= 16): a work-item owns
 * QW (16 with AVX-512, 8 with AVX2) consecutive queries, one vector per head
 * channel (channel-major q is
 * contiguous along the queries, and so is the channel-major output), and
 * walks the keys in blocks of KB with every key and value entry a scalar
 * broadcast from token-major kt[b][j][e], vt[b][j][e]. The running max, sum
 * and rescale are lane-wise: no horizontal reductions, full vector width in
 * both products whatever D is. The last work-item overlaps its neighbour
 * (same values written twice) instead of running a ragged tile.
 * QV vectors of QW queries per work-item share each broadcast key and value
 * entry (LQ >= QW QV). Defines: D, KB, QV, QW, MASK. Global range:
 * (ceil(LQ / (QW QV)), batch * heads). */
#if defined(QLANES) || defined(QBLOCKS) /* the query-lane kernels' vectors */
#ifndef QW
#define QW 16
#endif
#define QT CU_CAT(float, QW)
#define QI CU_CAT(int, QW)
#define QLOAD CU_CAT(vload, QW)
#define QSTORE CU_CAT(vstore, QW)

/* 2^x for x <= 0 (a score minus its running maximum), 0 below -125 (so
 * -inf gives 0): x = n + f with n = round(x) (adding 1.5 * 2^23 leaves n in
 * the low mantissa bits), |f| <= 1/2, 2^f by a degree-6 polynomial
 * (relative error under 1.2e-7), times 2^n through the exponent bits. The
 * library exp2 took ~27 instructions on PoCL (its floor split into two
 * 256-bit rounds), this 15. */
static inline QT exp2_neg(QT x)
{
	const QT big = (QT)12582912.0f;
	const QT xc = x > -125.0f ? x : (QT)(-125.0f);
	const QT t = xc + big, f = xc - (t - big);
	QT p = (QT)1.5337577e-4f;
	p = fma(p, f, (QT)1.3399860e-3f);
	p = fma(p, f, (QT)9.6185198e-3f);
	p = fma(p, f, (QT)5.5503290e-2f);
	p = fma(p, f, (QT)2.4022646e-1f);
	p = fma(p, f, (QT)6.9314718e-1f);
	p = fma(p, f, (QT)1.0f);
	const QI n = CU_CAT(as_int, QW)(t) - CU_CAT(as_int, QW)(big);
	const QT r = CU_CAT(as_float, QW)(CU_CAT(as_int, QW)(p) + (n << 23));
	return x > -125.0f ? r : (QT)0.0f;
}
#endif

#ifdef QLANES
__kernel void attention_fused_q_f32(__global const float *q, uint q_off, __global const float *kt,
				    uint kt_off, __global const float *vt, uint vt_off,
				    __global const float *mask, uint m_off, __global float *out,
				    uint out_off, int LQ, int YP, int LK, int heads,
				    float scale)
{
	const int i0 = min((int)get_global_id(0) * QW * QV, LQ - QW * QV), b = get_global_id(1);
	__global const float *qb = q + q_off + (size_t)b * D * LQ + i0;
	__global const float *kb = kt + kt_off + (size_t)b * LK * D;
	__global const float *vb = vt + vt_off + (size_t)b * LK * D;
	QT acc[QV][D], m[QV], l[QV];
	#pragma unroll
	for (int u = 0; u < QV; u++) {
		m[u] = (QT)(-INFINITY);
		l[u] = 0.0f;
		#pragma unroll
		for (int e = 0; e < D; e++)
			acc[u][e] = 0.0f;
	}
	for (int j0 = 0; j0 < LK; j0 += KB) {
		QT s[QV][KB];
		__global const float *kj[KB], *vj[KB];
		#pragma unroll
		for (int jj = 0; jj < KB; jj++) {
			const int j = min(j0 + jj, LK - 1); /* past the end: masked below */
			kj[jj] = kb + (size_t)j * D;
			vj[jj] = vb + (size_t)j * D;
			#pragma unroll
			for (int u = 0; u < QV; u++)
				s[u][jj] = 0.0f;
		}
		#pragma unroll
		for (int e = 0; e < D; e++) {
			QT qe[QV];
			#pragma unroll
			for (int u = 0; u < QV; u++)
				qe[u] = QLOAD(u, qb + (size_t)e * LQ);
			#pragma unroll
			for (int jj = 0; jj < KB; jj++) {
				const QT kv = (QT)(kj[jj][e]);
				#pragma unroll
				for (int u = 0; u < QV; u++)
					s[u][jj] = fma(qe[u], kv, s[u][jj]);
			}
		}
		QT keep[QV];
		#pragma unroll
		for (int u = 0; u < QV; u++) {
			QT bmax = m[u];
			#pragma unroll
			for (int jj = 0; jj < KB; jj++) {
				s[u][jj] *= scale;
#if MASK
				s[u][jj] += mask[m_off + (size_t)(b / heads) * LK + min(j0 + jj, LK - 1)];
#endif
				if (j0 + jj >= LK)
					s[u][jj] = (QT)(-INFINITY);
				bmax = fmax(bmax, s[u][jj]);
			}
			keep[u] = exp(m[u] - bmax); /* 0 on the first block */
			m[u] = bmax;
			l[u] *= keep[u];
			#pragma unroll
			for (int jj = 0; jj < KB; jj++) {
				s[u][jj] = exp(s[u][jj] - m[u]);
				l[u] += s[u][jj];
			}
		}
		#pragma unroll
		for (int e = 0; e < D; e++) {
			QT a[QV];
			#pragma unroll
			for (int u = 0; u < QV; u++)
				a[u] = acc[u][e] * keep[u];
			#pragma unroll
			for (int jj = 0; jj < KB; jj++) {
				const QT vv = (QT)(vj[jj][e]);
				#pragma unroll
				for (int u = 0; u < QV; u++)
					a[u] = fma(s[u][jj], vv, a[u]);
			}
			#pragma unroll
			for (int u = 0; u < QV; u++)
				acc[u][e] = a[u];
		}
	}
	#pragma unroll
	for (int u = 0; u < QV; u++) {
		const QT inv = 1.0f / l[u];
		#pragma unroll
		for (int e = 0; e < D; e++)
			QSTORE(acc[u][e] * inv, u, out + out_off + ((size_t)b * D + e) * YP + i0);
	}
	ZERO_ROW_TAILS();
}
#endif

/* The query-lane kernel in larger key blocks (CPU-class devices): per block
 * of KB keys the scores of the work-item's QW queries go to a private array
 * (L1), computed CK keys at a time with CK accumulators over the head
 * channels (the queries loaded once per work-item, not once per block), the
 * online-softmax rescale happens once per KB keys, and the output
 * accumulates CE channels at a time over all KB keys, so the spilled
 * accumulator row is read and written once per block instead of once per
 * few keys. QV query vectors per work-item (QV x CK score and QV x CE output
 * accumulators) share each broadcast key and value entry, halving the loads
 * per FMA at QV 2. Same layouts, masks and range as attention_fused_q_f32
 * (LQ >= QW QV). Defines: D, KB, CK, CE, QW, QV, MASK. */
#ifdef QBLOCKS
__kernel void attention_fused_qb_f32(__global const float *q, uint q_off, __global const float *kt,
				     uint kt_off, __global const float *vt, uint vt_off,
				     __global const float *mask, uint m_off, __global float *out,
				     uint out_off, int LQ, int YP, int LK, int heads,
				     float scale)
{
	const int i0 = min((int)get_global_id(0) * QW * QV, LQ - QW * QV), b = get_global_id(1);
	__global const float *qb = q + q_off + (size_t)b * D * LQ + i0;
	__global const float *kb = kt + kt_off + (size_t)b * LK * D;
	__global const float *vb = vt + vt_off + (size_t)b * LK * D;
	QT qv[QV][D], acc[QV][D], s[QV][KB], m[QV], l[QV];
	const float scale2 = scale * M_LOG2E_F; /* scores in base 2: exp2 is the cheaper exp */
	#pragma unroll
	for (int v = 0; v < QV; v++) {
		m[v] = (QT)(-INFINITY);
		l[v] = 0.0f;
	}
	for (int j0 = 0; j0 < LK; j0 += KB) {
		/* scores, CK keys x QV query vectors at a time */
		for (int jc = 0; jc < KB; jc += CK) {
			/* the first chunk reads the queries from global memory and keeps a
			 * private copy: their loads (rows LQ apart, each on its own page: a
			 * miss each) overlap that chunk's FMAs instead of stalling before it */
			const int first = (j0 | jc) == 0;
			QT a[QV][CK];
			__global const float *kj[CK];
			#pragma unroll
			for (int t = 0; t < CK; t++) {
				#pragma unroll
				for (int v = 0; v < QV; v++)
					a[v][t] = 0.0f;
				kj[t] = kb + (size_t)min(j0 + jc + t, LK - 1) * D;
			}
			for (int e = 0; e < D; e++) {
				QT x[QV];
				#pragma unroll
				for (int v = 0; v < QV; v++) {
					if (first) {
						x[v] = QLOAD(0, qb + (size_t)e * LQ + v * QW);
						qv[v][e] = x[v];
					} else {
						x[v] = qv[v][e];
					}
				}
				#pragma unroll
				for (int t = 0; t < CK; t++) {
					const QT kv = (QT)(kj[t][e]);
					#pragma unroll
					for (int v = 0; v < QV; v++)
						a[v][t] = fma(x[v], kv, a[v][t]);
				}
			}
			#pragma unroll
			for (int t = 0; t < CK; t++)
				#pragma unroll
				for (int v = 0; v < QV; v++)
					s[v][jc + t] = a[v][t];
		}
		/* the online softmax, once per block */
		QT keep[QV];
		#pragma unroll
		for (int v = 0; v < QV; v++) {
			/* four running maxima (a chain of dependent maxima is slower than the
			 * exps); a plain compare, as fmax's NaN rules cost three instructions */
			QT mx[4] = { m[v], m[v], m[v], m[v] };
			#pragma unroll
			for (int jj = 0; jj < KB; jj++) {
				QT x = s[v][jj] * scale2;
#if MASK
				x += M_LOG2E_F * mask[m_off + (size_t)(b / heads) * LK + min(j0 + jj, LK - 1)];
#endif
				if (j0 + jj >= LK) /* past the end: the clamped key weighs nothing */
					x = (QT)(-INFINITY);
				s[v][jj] = x;
				mx[jj % 4] = x > mx[jj % 4] ? x : mx[jj % 4];
			}
			mx[0] = mx[1] > mx[0] ? mx[1] : mx[0];
			mx[2] = mx[3] > mx[2] ? mx[3] : mx[2];
			const QT bmax = mx[2] > mx[0] ? mx[2] : mx[0];
			keep[v] = exp2(m[v] - bmax); /* 0 on the first block */
			m[v] = bmax;
			l[v] *= keep[v];
			for (int jj = 0; jj < KB; jj++) {
				s[v][jj] = exp2_neg(s[v][jj] - bmax);
				l[v] += s[v][jj];
			}
		}
		/* the output, CE channels x QV query vectors at a time over the whole block */
		for (int e0 = 0; e0 < D; e0 += CE) {
			QT o[QV][CE];
			#pragma unroll
			for (int c = 0; c < CE; c++)
				#pragma unroll
				for (int v = 0; v < QV; v++)
					o[v][c] = e0 + c < D && j0 ? acc[v][min(e0 + c, D - 1)] * keep[v]
								   : (QT)0.0f; /* acc unset before */
			/* keys past the end weigh exactly 0: not visited */
			__global const float *vj = vb + (size_t)j0 * D + e0;
			for (int jj = 0; jj < min(KB, LK - j0); jj++, vj += D) {
				QT pj[QV];
				#pragma unroll
				for (int v = 0; v < QV; v++)
					pj[v] = s[v][jj];
				#pragma unroll
				for (int c = 0; c < CE; c++) {
					const QT vv = (QT)(vj[min(c, D - 1 - e0)]);
					#pragma unroll
					for (int v = 0; v < QV; v++)
						o[v][c] = fma(pj[v], vv, o[v][c]);
				}
			}
			#pragma unroll
			for (int c = 0; c < CE; c++)
				#pragma unroll
				for (int v = 0; v < QV; v++)
					if (e0 + c < D)
						acc[v][e0 + c] = o[v][c];
		}
	}
	#pragma unroll
	for (int v = 0; v < QV; v++) {
		const QT inv = 1.0f / l[v];
		for (int e = 0; e < D; e++)
			CU_VSTOREU(QW, acc[v][e] * inv, out + out_off + ((size_t)b * D + e) * YP + i0 + v * QW);
	}
	ZERO_ROW_TAILS();
}
#endif
