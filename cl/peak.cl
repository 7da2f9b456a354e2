/* Float32 FMA throughput: eight independent float16 FMA chains per
 * work-item, enough to cover the FMA latency of SIMD CPU cores. No
 * memory traffic but one store. Work per work-item: iters * 8 * 16 * 2 flops. */
__kernel void fma_peak(__global float *out, int iters)
{
	const float g = (float)get_global_id(0) * 1e-9f;
	float16 a0 = g, a1 = g + 1e-3f, a2 = g + 2e-3f, a3 = g + 3e-3f;
	float16 a4 = g + 4e-3f, a5 = g + 5e-3f, a6 = g + 6e-3f, a7 = g + 7e-3f;
	const float16 b = 0.9999999f, c = 1e-7f;
	for (int i = 0; i < iters; i++) {
		a0 = fma(a0, b, c);
		a1 = fma(a1, b, c);
		a2 = fma(a2, b, c);
		a3 = fma(a3, b, c);
		a4 = fma(a4, b, c);
		a5 = fma(a5, b, c);
		a6 = fma(a6, b, c);
		a7 = fma(a7, b, c);
	}
	float16 s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
	out[get_global_id(0)] = s.s0 + s.s5 + s.sa + s.sf;
}
