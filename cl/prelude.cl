/* Prepended to every clunet kernel source. OpenCL C 1.2.
 * Buffers are passed as (pointer, element offset) pairs so that every tensor
 * can live anywhere in the activation arena. */

#define CU_ACT_NONE 0
#define CU_ACT_SILU 1
#define CU_ACT_MISH 2
#define CU_ACT_GELU 3
#define CU_ACT_RELU 4

/* The activations of diffusers' get_activation(), as torch computes them. */
inline float cu_act(float x, int act)
{
	switch (act) {
	case CU_ACT_SILU:
		return x / (1.0f + exp(-x));
	case CU_ACT_MISH:
		return x * tanh(log1p(exp(x)));
	case CU_ACT_GELU:
		return 0.5f * x * (1.0f + erf(x * 0.70710678118654752440f));
	case CU_ACT_RELU:
		return fmax(x, 0.0f);
	default:
		return x;
	}
}

/* The same on 8 lanes: the built-ins' vector forms are SIMD code (PoCL maps
 * them to SLEEF), where a scalar loop calls exp or erf once per element. */
inline float8 cu_act8(float8 x, int act)
{
	switch (act) {
	case CU_ACT_SILU:
		return x / (1.0f + exp(-x));
	case CU_ACT_MISH:
		return x * tanh(log1p(exp(x)));
	case CU_ACT_GELU:
		return 0.5f * x * (1.0f + erf(x * 0.70710678118654752440f));
	case CU_ACT_RELU:
		return fmax(x, 0.0f);
	default:
		return x;
	}
}

#define CU_CAT_(a, b) a##b
#define CU_CAT(a, b) CU_CAT_(a, b)
