/* Strided-batched GEMM, row-major:
 *   C[b] = alpha * op(A[b]) op(B[b]),  op(X) = X or X^T,
 *   A(i, l) = TA ? a[l * lda + i] : a[i * lda + l]
 *   B(l, j) = TB ? b[j * ldb + l] : b[l * ldb + j]
 * Kernels, all explicit SIMD but the reference:
 *   gemm_pack_b + gemm_pk (below, PACKED): CPU-class devices, B packed into
 *            panels; every product of our own but the one gemm_dot takes.
 *   gemm_dot (TB = 1, TA = 0): both operands are contiguous along l, so a
 *            work-item owns MR x NR outputs and accumulates vectors along l
 *            (a dot-product kernel), summing lanes at the end: products whose
 *            B is the larger operand (the attention's P V^T).
 *   gemm_tiled (TILED): the GPU shape.
 *   gemm_ref (any TA, TB): one output per work-item; the reference.
 * Defines: VW (8 or 16), MR, NB, NR, TA, TB.
 * Global range: gemm_dot (ceil(n / NR), ceil(m / MR), batch); gemm_ref (n, m, batch). */

#define VT CU_CAT(float, VW)
#define VLOAD CU_CAT(vload, VW)
#define VSTORE CU_CAT(vstore, VW)

#define A_AT(i, l) (TA ? a[(size_t)(l) * lda + (i)] : a[(size_t)(i) * lda + (l)])
#define B_AT(l, j) (TB ? b[(size_t)(j) * ldb + (l)] : b[(size_t)(l) * ldb + (j)])

__kernel void gemm_ref(__global const float *a, uint a_off, __global const float *b, uint b_off,
		       __global float *c, uint c_off, int m, int n, int k, int lda, int ldb, int ldc,
		       int sa, int sb, int sc, float alpha)
{
	int j = get_global_id(0), i = get_global_id(1), q = get_global_id(2);
	if (i >= m || j >= n)
		return;
	a += a_off + (size_t)q * sa;
	b += b_off + (size_t)q * sb;
	float acc = 0.0f;
	for (int l = 0; l < k; l++)
		acc = fma(A_AT(i, l), B_AT(l, j), acc);
	c[c_off + (size_t)q * sc + (size_t)i * ldc + j] = alpha * acc;
}


#if TB && !TA
inline float lane_sum(VT v)
{
	float s[VW];
	VSTORE(v, 0, s);
	float t = 0.0f;
	for (int i = 0; i < VW; i++)
		t += s[i];
	return t;
}

__kernel void gemm_dot(__global const float *a, uint a_off, __global const float *b, uint b_off,
		       __global float *c, uint c_off, int m, int n, int k, int lda, int ldb, int ldc,
		       int sa, int sb, int sc, float alpha)
{
	const int j0 = get_global_id(0) * NR, i0 = get_global_id(1) * MR, q = get_global_id(2);
	a += a_off + (size_t)q * sa;
	b += b_off + (size_t)q * sb;
	c += c_off + (size_t)q * sc;
	__global const float *ar[MR], *br[NR];
	#pragma unroll
	for (int r = 0; r < MR; r++)
		ar[r] = a + (size_t)min(i0 + r, m - 1) * lda;
	#pragma unroll
	for (int s = 0; s < NR; s++)
		br[s] = b + (size_t)min(j0 + s, n - 1) * ldb;
	VT acc[MR][NR];
	#pragma unroll
	for (int r = 0; r < MR; r++)
		#pragma unroll
		for (int s = 0; s < NR; s++)
			acc[r][s] = 0.0f;
	int l = 0;
	for (; l + VW <= k; l += VW) {
		VT bv[NR];
		#pragma unroll
		for (int s = 0; s < NR; s++)
			bv[s] = VLOAD(0, br[s] + l);
		#pragma unroll
		for (int r = 0; r < MR; r++) {
			const VT av = VLOAD(0, ar[r] + l);
			#pragma unroll
			for (int s = 0; s < NR; s++)
				acc[r][s] = fma(av, bv[s], acc[r][s]);
		}
	}
	for (int r = 0; r < MR; r++) {
		if (i0 + r >= m)
			break;
		for (int s = 0; s < NR; s++) {
			if (j0 + s >= n)
				break;
			float t = lane_sum(acc[r][s]);
			for (int x = l; x < k; x++)
				t = fma(ar[r][x], br[s][x], t);
			c[(size_t)(i0 + r) * ldc + j0 + s] = alpha * t;
		}
	}
}
#endif

/* gemm_tiled: the classic GPU shape (CLUNET_GEMM=tiled; GPU-class devices):
 * a 16x16 work-group computes a 64x64 block of C, each work-item 4x4 of it
 * (rows ty + 16 r, columns tx + 16 s), over K in steps of 16 staged in local
 * memory; loads are laid out so that neighbouring work-items read
 * neighbouring addresses whichever operand is transposed. Any m, n, k.
 * Global range: (16 ceil(n / 64), 16 ceil(m / 64), batch), local (16, 16, 1). */
#ifdef TILED
#define TS 64
#define TK 16
#define WPT 4
__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm_tiled(__global const float *a, uint a_off, __global const float *b, uint b_off,
		__global float *c, uint c_off, int m, int n, int k, int lda, int ldb, int ldc,
		int sa, int sb, int sc, float alpha)
{
	const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * 16 + tx;
	const int j0 = get_group_id(0) * TS, i0 = get_group_id(1) * TS, q = get_global_id(2);
	__local float as[TK][TS + 1], bs[TK][TS + 1];
	float acc[WPT][WPT];
	a += a_off + (size_t)q * sa;
	b += b_off + (size_t)q * sb;
	c += c_off + (size_t)q * sc;
	for (int r = 0; r < WPT; r++)
		for (int s = 0; s < WPT; s++)
			acc[r][s] = 0.0f;
	for (int l0 = 0; l0 < k; l0 += TK) {
		for (int t = lid; t < TK * TS; t += 256) {
			int l, i;
			if (TA) {
				l = t / TS;
				i = t % TS;
			} else {
				i = t / TK;
				l = t % TK;
			}
			as[l][i] = i0 + i < m && l0 + l < k ? A_AT(i0 + i, l0 + l) : 0.0f;
			if (TB) {
				i = t / TK;
				l = t % TK;
			} else {
				l = t / TS;
				i = t % TS;
			}
			bs[l][i] = j0 + i < n && l0 + l < k ? B_AT(l0 + l, j0 + i) : 0.0f;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		for (int l = 0; l < TK; l++) {
			float av[WPT], bv[WPT];
			for (int r = 0; r < WPT; r++)
				av[r] = as[l][ty + 16 * r];
			for (int s = 0; s < WPT; s++)
				bv[s] = bs[l][tx + 16 * s];
			for (int r = 0; r < WPT; r++)
				for (int s = 0; s < WPT; s++)
					acc[r][s] = fma(av[r], bv[s], acc[r][s]);
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	for (int r = 0; r < WPT; r++)
		for (int s = 0; s < WPT; s++) {
			const int i = i0 + ty + 16 * r, j = j0 + tx + 16 * s;
			if (i < m && j < n)
				c[(size_t)i * ldc + j] = alpha * acc[r][s];
		}
}
#endif

/* The packed-panel kernels for CPU-class devices (the default there):
 *   gemm_pack_b: B (either TB) into panels of NBW = VW * NB columns,
 *     bp[q][jb][l][NBW], zero past n: every B row a panel needs is then
 *     NBW contiguous floats, and consecutive l are adjacent (B rows a
 *     power-of-two stride apart fell into a few cache sets). Range:
 *     (k, ceil(n / NBW), batch).
 *   gemm_pk: C = alpha op(A) B over the panels; a work-item owns MR rows x one panel (MR x NB vector
 *     accumulators: 6 x 2 float8 on AVX2's 16 registers, 6 x 4 float16 on
 *     AVX-512's 32, or 8 x 3, 4 x 5: pk_tile in lib/ops/gemm.c), walks l
 *     over the panel with A entries broadcast (TA: the MR rows of A^T are
 *     adjacent). Range: (ceil(n / NBW), ceil(m / MR),
 *     batch), dimension 0 the panels: work-items that run together share
 *     their A rows. */
#ifdef PACKED
#define NBW (VW * NB)
__kernel void gemm_pack_b(__global const float *b, uint b_off, __global float *bp, uint bp_off,
			  int n, int k, int ldb, int sb)
{
	const int l = get_global_id(0), jb = get_global_id(1), q = get_global_id(2);
	const int np = (n + NBW - 1) / NBW;
	b += b_off + (size_t)q * sb;
	__global float *dst = bp + bp_off + (((size_t)q * np + jb) * k + l) * NBW;
	for (int x = 0; x < NBW; x++) {
		const int j = jb * NBW + x;
		dst[x] = j < n ? B_AT(l, j) : 0.0f;
	}
}

__kernel void gemm_pk(__global const float *a, uint a_off, __global const float *bp, uint bp_off,
		      __global float *c, uint c_off, int m, int n, int k, int lda, int ldc, int sa,
		      int sbp, int sc, float alpha)
{
#if ORD /* the row blocks along dimension 0: a B panel serves them while in cache */
	const int jb = get_global_id(1), i0 = get_global_id(0) * MR, q = get_global_id(2);
#else
	const int jb = get_global_id(0), i0 = get_global_id(1) * MR, q = get_global_id(2);
#endif
	const int j0 = jb * NBW;
	a += a_off + (size_t)q * sa;
	/* sbp: floats per batch item of the packed B, 0 when every item shares one */
	__global const float *panel = bp + bp_off + (size_t)q * sbp + (size_t)jb * k * NBW;
	c += c_off + (size_t)q * sc;
	/* A(row r, l) at ar[r] + l * as (TA: the rows adjacent, l a row of A^T) */
	__global const float *ar[MR];
	const size_t as = TA ? (size_t)lda : 1;
	#pragma unroll
	for (int r = 0; r < MR; r++) { /* clamp: extra rows compute, never store */
		const int row = min(i0 + r, m - 1);
		ar[r] = a + (TA ? (size_t)row : (size_t)row * lda);
	}
	VT acc[MR][NB];
	#pragma unroll
	for (int r = 0; r < MR; r++)
		#pragma unroll
		for (int v = 0; v < NB; v++)
			acc[r][v] = 0.0f;
	int l = 0;
#define PK_STEP()                                                             \
	do {                                                                  \
		VT bv[NB];                                                    \
		_Pragma("unroll") for (int v = 0; v < NB; v++)                \
			bv[v] = VLOAD(v, panel);                              \
		_Pragma("unroll") for (int r = 0; r < MR; r++) {              \
			const VT av = (VT)(ar[r][l * as]);                    \
			_Pragma("unroll") for (int v = 0; v < NB; v++)        \
				acc[r][v] = fma(av, bv[v], acc[r][v]);        \
		}                                                             \
		panel += NBW;                                                 \
		l++;                                                          \
	} while (0)
	for (; l + 4 <= k;) {
		PK_STEP();
		PK_STEP();
		PK_STEP();
		PK_STEP();
	}
	while (l < k)
		PK_STEP();
	const int left = n - j0; /* columns of this panel inside C */
	#pragma unroll
	for (int r = 0; r < MR; r++) {
		__global float *cr = c + (size_t)(i0 + r) * ldc + j0;
		#pragma unroll
		for (int v = 0; v < NB; v++) {
			if (i0 + r >= m || v * VW >= left)
				continue;
			if (v * VW + VW <= left) { /* whole vectors; the one across n by element */
				CU_VSTOREU(VW, alpha * acc[r][v], cr + v * VW);
			} else {
				float t[VW];
				VSTORE(alpha * acc[r][v], 0, t);
				for (int x = 0; x < left - v * VW; x++)
					cr[v * VW + x] = t[x];
			}
		}
	}
}
#endif
