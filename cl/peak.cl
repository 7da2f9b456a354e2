/* Float32 FMA throughput: CH independent chains of VT (float16 or float8)
 * per work-item, enough to cover the FMA latency of SIMD CPU cores while
 * every chain stays in a register (8 float16 on AVX-512's 32 registers; 12
 * float8 on AVX2's 16: float16 chains there are register pairs and spill).
 * clunet_context_measure_peak runs both shapes and keeps the faster. No
 * memory traffic but one store. Work per work-item: iters * CH * PW * 2 flops.
 * Defines: PW (vector width, 8 or 16), CH (chains, <= 12). */
#ifndef PW
#define PW 16
#endif
#ifndef CH
#define CH 8
#endif
#define VT CU_CAT(float, PW)

#define STEP(i) if (i < CH) a##i = fma(a##i, b, c)

__kernel void fma_peak(__global float *out, int iters)
{
	const float g = (float)get_global_id(0) * 1e-9f;
	VT a0 = g, a1 = g + 1e-3f, a2 = g + 2e-3f, a3 = g + 3e-3f, a4 = g + 4e-3f, a5 = g + 5e-3f;
	VT a6 = g + 6e-3f, a7 = g + 7e-3f, a8 = g + 8e-3f, a9 = g + 9e-3f, a10 = g + 1e-2f;
	VT a11 = g + 1.1e-2f;
	const VT b = 0.9999999f, c = 1e-7f;
	for (int i = 0; i < iters; i++) {
		STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5);
		STEP(6); STEP(7); STEP(8); STEP(9); STEP(10); STEP(11);
	}
	VT s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
	out[get_global_id(0)] = s.s0 + s.s5 + s.s3 + s.s7;
}
