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

/* The same on 8 or 16 lanes: the built-ins' vector forms are SIMD code (PoCL
 * maps them to SLEEF), where a scalar loop calls exp or erf once per element. */
#define CU_ACT_VEC(T, name)                                                     \
	inline T name(T x, int act)                                             \
	{                                                                       \
		switch (act) {                                                  \
		case CU_ACT_SILU:                                               \
			return x / (1.0f + exp(-x));                            \
		case CU_ACT_MISH:                                               \
			return x * tanh(log1p(exp(x)));                         \
		case CU_ACT_GELU:                                               \
			return 0.5f * x * (1.0f + erf(x * 0.70710678118654752440f)); \
		case CU_ACT_RELU:                                               \
			return fmax(x, 0.0f);                                   \
		default:                                                        \
			return x;                                               \
		}                                                               \
	}
CU_ACT_VEC(float8, cu_act8)
CU_ACT_VEC(float16, cu_act16)

#define CU_CAT_(a, b) a##b
#define CU_CAT(a, b) CU_CAT_(a, b)

/* One unaligned store (CU_VSTOREU) or load (CU_VLOADU) of a float8 or
 * float16 (n: 8 or 16) at p. On clang (PoCL) an access through a vector
 * type of 4-byte alignment is one instruction, where vstore16 became four
 * 128-bit stores and extracts, and vload16 at some of the 3x3 taps 128-bit
 * loads and inserts; vstoren / vloadn elsewhere. */
#ifdef __clang__
typedef float8 cu_float8u __attribute__((aligned(4)));
typedef float16 cu_float16u __attribute__((aligned(4)));
#define CU_VSTOREU(n, x, p) (*(__global CU_CAT(CU_CAT(cu_float, n), u) *)(p) = (x))
#define CU_VLOADU(n, p) (*(__global const CU_CAT(CU_CAT(cu_float, n), u) *)(p))
#else
#define CU_VLOADU(n, p) CU_CAT(vload, n)(0, p)
#define CU_VSTOREU(n, x, p) CU_CAT(vstore, n)(x, 0, p)
#endif

/* How the convolution kernels (conv2d.cl, conv_pv.cl) read an input that is
 * resampled on the fly: UPS 1 nearest x2, UPS 2 a zero between neighbours
 * along x (transposed 1-D conv), else as is. LOGH/LOGW: the logical size;
 * TAKE(i): logical column i exists and is not an inserted zero (needs LW);
 * SRCY/SRCX: the stored row/column it reads. */
#ifdef UPS
#if UPS == 1
#define SRCY(i) ((i) >> 1)
#define SRCX(i) ((i) >> 1)
#define LOGH(h) (2 * (h))
#define LOGW(w) (2 * (w))
#define TAKE(i) ((i) >= 0 && (i) < LW)
#elif UPS == 2
#define SRCY(i) (i)
#define SRCX(i) ((i) >> 1)
#define LOGH(h) (h)
#define LOGW(w) (2 * (w) - 1)
#define TAKE(i) ((i) >= 0 && (i) < LW && ((i) & 1) == 0) /* the inserted zeros */
#else
#define SRCY(i) (i)
#define SRCX(i) (i)
#define LOGH(h) (h)
#define LOGW(w) (w)
#define TAKE(i) ((i) >= 0 && (i) < LW)
#endif
#endif
