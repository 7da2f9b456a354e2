/* Attention without a score matrix (online softmax), for long sequences.
 *
 * attention_fused_f32: per (batch * head) b, queries q[b][e][i] (channel-
 * major, e < D, i < LQ), keys and values token-major kt[b][j][e], vt[b][j][e]
 * (j < LK); out[b][e][i] = sum_j softmax_j(scale * q_i . k_j) v_j[e].
 * A work-item owns QB queries and walks all keys in blocks of KB: the block's
 * scores, one rescale of the running sum and accumulators per block, then the
 * weighted values. Scores are never stored.
 * Defines: D (head dim), QB, KB.
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

__kernel void attention_fused_f32(__global const float *q, uint q_off, __global const float *kt,
				  uint kt_off, __global const float *vt, uint vt_off,
				  __global float *out, uint out_off, int LQ, int LK, float scale)
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
			#pragma unroll
			for (int r = 0; r < QB; r++) {
				s[r][jj] = dot[r];
				bmax[r] = fmax(bmax[r], dot[r]);
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
			out[out_off + ((size_t)b * D + e) * LQ + i0 + r] = acc[r][e] * inv;
	}
}
