/*
 * clunet — Hugging Face diffusers UNet models on any OpenCL device.
 *
 * A context owns one OpenCL device, its command queue, the on-disk program
 * cache and the logging hook. A model is a diffusers checkpoint folder
 * (config.json + diffusion_pytorch_model.safetensors) loaded onto that device.
 * A forward call takes host tensors named after the arguments of diffusers'
 * forward() and returns the output sample, computed as diffusers computes it.
 *
 *     clunet_context_t *ctx = NULL;
 *     clunet_model_t *model = NULL;
 *     if (clunet_context_create(NULL, &ctx) != CLUNET_OK ||
 *         clunet_model_load(ctx, "ddpm-cifar10-32", NULL, &model) != CLUNET_OK) {
 *             fprintf(stderr, "%s\n", clunet_last_error());
 *             return 1;
 *     }
 *     int64_t t = 999;
 *     clunet_tensor in[2] = {
 *             { "sample", CLUNET_F32, 4, { 1, 3, 32, 32 }, noise, 0 },
 *             { "timestep", CLUNET_I64, 0, { 0 }, &t, 0 },
 *     };
 *     clunet_output out;
 *     if (clunet_model_forward(model, in, 2, &out) == CLUNET_OK)
 *             use(out.data, out.shape);   // valid until the next forward or free
 *     clunet_model_free(model);
 *     clunet_context_destroy(ctx);
 *
 * Every call returns a clunet_status; on failure clunet_last_error() gives a
 * message (per thread) naming the file, key, tensor or OpenCL call at fault.
 * The library never prints and never exits: warnings and debug messages go to
 * the log callback of the context options, if one is set.
 *
 * Threads: a context and its models may be used from one thread at a time.
 * Distinct contexts are independent.
 */
#ifndef CLUNET_H
#define CLUNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLUNET_VERSION "0.1.0"
#define CLUNET_MAX_DIMS 6

typedef enum clunet_status {
	CLUNET_OK = 0,
	CLUNET_ERR_ARGUMENT,      /* an API argument is invalid */
	CLUNET_ERR_IO,            /* a file is missing, unreadable or unwritable */
	CLUNET_ERR_FORMAT,        /* a file is malformed (safetensors, JSON) */
	CLUNET_ERR_CONFIG,        /* a config.json value diffusers does not allow */
	CLUNET_ERR_WEIGHTS,       /* a missing, extra or mis-shaped weight tensor */
	CLUNET_ERR_INPUT,         /* a forward input is missing or has a wrong shape/dtype */
	CLUNET_ERR_UNSUPPORTED,   /* valid for diffusers, not supported by clunet */
	CLUNET_ERR_NO_DEVICE,     /* no OpenCL platform/device matches */
	CLUNET_ERR_OPENCL,        /* an OpenCL call failed */
	CLUNET_ERR_BUILD,         /* a kernel failed to compile */
	CLUNET_ERR_DEVICE_MEMORY, /* the device ran out of memory */
	CLUNET_ERR_HOST_MEMORY,   /* malloc failed */
} clunet_status;

/* Message of the last failed call on this thread ("" if none). */
const char *clunet_last_error(void);
/* Short name of a status code, e.g. "CLUNET_ERR_WEIGHTS". */
const char *clunet_status_name(clunet_status status);

typedef enum clunet_dtype {
	CLUNET_F32,
	CLUNET_F64,
	CLUNET_F16,
	CLUNET_BF16,
	CLUNET_I64,
	CLUNET_I32,
} clunet_dtype;

/* A host tensor, row-major and contiguous. ndim 0 is a scalar. */
typedef struct clunet_tensor {
	const char *name;
	clunet_dtype dtype;
	int ndim;
	int64_t shape[CLUNET_MAX_DIMS];
	const void *data;
	unsigned flags; /* CLUNET_TENSOR_* */
} clunet_tensor;

/* The value stands for a Python number passed to diffusers' forward(), not a
 * tensor: diffusers turns a timestep given that way into a long tensor, so a
 * float is truncated toward zero. In a safetensors inputs file, list such
 * names in the metadata: {"python_scalars": "timestep"}. */
#define CLUNET_TENSOR_PYTHON_NUMBER 1u

typedef enum clunet_log_level {
	CLUNET_LOG_DEBUG,
	CLUNET_LOG_INFO,
	CLUNET_LOG_WARNING,
} clunet_log_level;

typedef void (*clunet_log_fn)(void *user, clunet_log_level level, const char *message);

/* ------------------------------------------------------------------ devices */

typedef struct clunet_device_info {
	int platform_index; /* position among the OpenCL platforms */
	int device_index;   /* position among that platform's devices */
	char platform[128];
	char platform_version[128];
	char name[128];
	char vendor[128];
	char version[128];  /* CL_DEVICE_VERSION */
	char driver[128];   /* CL_DRIVER_VERSION */
	char type[16];      /* "GPU", "CPU", "ACCELERATOR", "OTHER" */
	unsigned compute_units;
	uint64_t global_mem_bytes;
	uint64_t max_alloc_bytes;
	uint64_t local_mem_bytes;
	int fp16; /* cl_khr_fp16 arithmetic */
	int fp64; /* cl_khr_fp64 */
} clunet_device_info;

/* Fills up to `cap` entries of every device of every platform; *count gets the
 * total number of devices (which may exceed cap). */
clunet_status clunet_list_devices(clunet_device_info *out, size_t cap, size_t *count);

/* ----------------------------------------------------------------- contexts */

typedef struct clunet_context clunet_context_t;

typedef struct clunet_context_options {
	/* Device: "P:D" (platform and device index), "N" (N-th device over all
	 * platforms) or a case-insensitive substring of "platform device" names.
	 * NULL: $CLUNET_DEVICE, else the first GPU, else the first device. */
	const char *device;
	/* Program cache folder. NULL: $CLUNET_CACHE_DIR, else
	 * $XDG_CACHE_HOME/clunet, else ~/.cache/clunet. */
	const char *cache_dir;
	int no_cache;              /* 1: never read or write the program cache */
	uint64_t cache_budget_bytes; /* 0: default (512 MiB); least recently used entries go first */
	int profiling;             /* 1: time every op with OpenCL events */
	clunet_log_fn log;         /* NULL: messages are dropped */
	void *log_user;
} clunet_context_options;

void clunet_context_options_init(clunet_context_options *options);
clunet_status clunet_context_create(const clunet_context_options *options, clunet_context_t **out);
void clunet_context_destroy(clunet_context_t *ctx);
clunet_status clunet_context_device(const clunet_context_t *ctx, clunet_device_info *out);
/* Measures the device's float32 FMA throughput in GFLOP/s with a short
 * kernel (best of a few launches): the peak that benchmark figures are
 * compared with. The figure moves with the machine's load, so measure it in
 * the same run as what it is compared with. */
clunet_status clunet_context_measure_peak(clunet_context_t *ctx, double *gflops);
/* The cache folder in use for this context's device ("" when caching is off). */
const char *clunet_context_cache_dir(const clunet_context_t *ctx);

/* ------------------------------------------------------------------- models */

typedef struct clunet_model clunet_model_t;

typedef struct clunet_model_options {
	/* When the folder has a config.json but no weight file, 1 fills every
	 * weight with seeded random values (for benchmarks); 0 makes it an error. */
	int allow_random_weights;
	uint64_t random_seed;
	/* Weight file variant, as diffusers' `variant`: "fp16" reads
	 * diffusion_pytorch_model.fp16.safetensors. NULL: the plain file. */
	const char *variant;
} clunet_model_options;

void clunet_model_options_init(clunet_model_options *options);

/* Reads dir/config.json and dir/diffusion_pytorch_model.safetensors (or the
 * shards its .index.json lists), checks every config field and every tensor,
 * and uploads the weights. */
clunet_status clunet_model_load(clunet_context_t *ctx, const char *dir,
				const clunet_model_options *options, clunet_model_t **out);
void clunet_model_free(clunet_model_t *model);
/* The diffusers class name from config.json, e.g. "UNet2DModel". */
const char *clunet_model_class(const clunet_model_t *model);

typedef struct clunet_output {
	int ndim;
	int64_t shape[CLUNET_MAX_DIMS];
	const float *data; /* owned by the model; valid until the next forward or free */
} clunet_output;

/* Runs diffusers' forward(). Inputs are named after its arguments (`sample`,
 * `timestep`, `class_labels`, ...; entry i of a tuple argument as `name.i`,
 * entry k of a dict argument as `name.k`). Floating inputs may be F32, F64,
 * F16 or BF16; timesteps and labels may also be I64 or I32. The first call at
 * a new input shape builds and plans the graph; later calls reuse the plan. */
clunet_status clunet_model_forward(clunet_model_t *model, const clunet_tensor *inputs,
				   size_t n_inputs, clunet_output *out);

typedef struct clunet_plan_info {
	uint64_t peak_activation_bytes; /* size of the activation arena */
	uint64_t weight_bytes;          /* device memory held by weights */
	double gflop;                   /* floating-point work of one forward */
	size_t n_ops;
} clunet_plan_info;

/* Builds (or finds) the plan for these inputs without running it. */
clunet_status clunet_model_plan(clunet_model_t *model, const clunet_tensor *inputs,
				size_t n_inputs, clunet_plan_info *out);

/* Random inputs of the right names, shapes and dtypes for this model at the
 * given sizes (0 = model default, -1 = smallest valid): what `clunet bench` runs. The array stays
 * valid until the next call or clunet_model_free. */
typedef struct clunet_example_shape {
	int batch, height, width, length, frames;
	uint64_t seed;
} clunet_example_shape;
clunet_status clunet_model_example_inputs(clunet_model_t *model, const clunet_example_shape *shape,
					  const clunet_tensor **inputs, size_t *n_inputs);

typedef struct clunet_op_profile {
	const char *name; /* op kind, e.g. "conv2d" */
	size_t count;
	double seconds;   /* summed over the ops of this kind, from OpenCL events */
	double gflop;
} clunet_op_profile;

/* Per-op times of the last forward (needs a context created with profiling),
 * one entry per op kind, sorted by time, longest first. */
clunet_status clunet_model_profile(clunet_model_t *model, const clunet_op_profile **ops,
				   size_t *n_ops);

/* ------------------------------------------ tuning */

/* The autotuner (`clunet tune`). For every op of the plan for these inputs
 * that has implementation choices (tile sizes, NDRange order, key blocks),
 * each candidate runs on the real activations of a forward, is checked
 * against the default (relative L2 <= 1e-5, else rejected), timed with
 * OpenCL events, dropped when a run exceeds the limit; the fastest is stored
 * in the per-device tuning database in the cache folder, which every plan
 * built afterwards on this device and driver uses (an entry written under
 * another driver version is ignored). Needs a context with profiling and a
 * cache folder. */
typedef struct clunet_tune_options {
	int runs;             /* timed runs per candidate (default 3) */
	double limit_seconds; /* per run; 0: ten times the default's time + 50 ms */
	/* called after each op shape is decided, and after each CLBlast candidate
	 * (key "clblast candidate i/N", choice its parameters or why it was
	 * rejected) (may be NULL) */
	void (*progress)(void *user, size_t op, size_t n_ops, const char *key, const char *choice,
			 double default_seconds, double best_seconds);
	void *user;
	/* CLBlast's own Xgemm parameters, for the GEMMs that may run on CLBlast
	 * (GPU-class devices, or CLUNET_GEMM=clblast): each candidate set runs in
	 * a separate process so that one that crashes or hangs the driver costs
	 * only itself. `worker` is a program that calls clunet_tune_worker_main()
	 * when its first argument is CLUNET_TUNE_WORKER_ARG (the clunet command
	 * does: pass its path). NULL: CLBlast tuning fails with a message when
	 * the plan has such GEMMs, unless clblast_candidates is -1. */
	const char *worker;
	int clblast_candidates;        /* parameter sets to try; 0: 12; -1: do not tune CLBlast */
	double clblast_limit_seconds;  /* per candidate process, compilation included; 0: 300 */
	uint64_t clblast_seed;         /* which sample of CLBlast's parameter space */
} clunet_tune_options;

typedef struct clunet_tune_report {
	size_t shapes;            /* distinct op shapes tuned */
	size_t candidates;        /* candidates tried */
	size_t rejected;          /* wrong output or failed to build */
	size_t too_slow;          /* over the time limit */
	size_t unconfirmed;       /* first-pass winners that lost the alternating re-check */
	double default_seconds;   /* the tuned ops of one forward, with defaults */
	double tuned_seconds;     /* the same with the winners */
	/* CLBlast parameter search (zero when no GEMM of the plan may run on CLBlast) */
	size_t clblast_shapes;      /* distinct GEMM shapes measured */
	size_t clblast_candidates;  /* parameter sets tried */
	size_t clblast_wrong;       /* wrong results */
	size_t clblast_too_slow;    /* over the per-run limit */
	size_t clblast_failed;      /* crashed, hung (killed at the limit) or refused */
	double clblast_default_seconds; /* those GEMMs of one forward, stock parameters */
	double clblast_tuned_seconds;   /* the same with the parameters kept */
	char clblast_choice[256];   /* the parameters kept, or "default" */
} clunet_tune_report;

/* The first argument that makes a program a CLBlast tuning worker. */
#define CLUNET_TUNE_WORKER_ARG "--clunet-tune-worker"
/* A tuning worker's whole job: call it from main() when argv[1] is
 * CLUNET_TUNE_WORKER_ARG and return what it returns. It talks to the tuner
 * through its standard output (the one place clunet prints, and only in a
 * process the tuner started for the purpose). */
int clunet_tune_worker_main(int argc, char **argv);

void clunet_tune_options_init(clunet_tune_options *options);
clunet_status clunet_model_tune(clunet_model_t *model, const clunet_tensor *inputs,
				size_t n_inputs, const clunet_tune_options *options,
				clunet_tune_report *report);
/* The database of the context's device: number of entries; entry i (strings
 * valid until the next tuning call or the context's end). */
size_t clunet_tune_count(clunet_context_t *ctx);
clunet_status clunet_tune_entry(clunet_context_t *ctx, size_t i, const char **key,
				const char **choice);

/* ------------------------------------------ methods that change only speed or memory */

/* How attention runs; every choice gives the same result (within float
 * rounding). Changing it re-plans. */
typedef struct clunet_attention_options {
	int slice_size; /* diffusers' set_attention_slice: score blocks of this many heads at a
			   time (0: all at once) */
	int fused_qkv;  /* diffusers' fuse_qkv_projections: one projection for q, k, v */
	int kernel;     /* -1: the planner picks (the memory-efficient kernel when the scores
			   would exceed 32 MiB, and on CPU-class devices whenever there are 16
			   queries or more and no slicing, where it is also the fastest);
			   0: scores materialised; 1: memory-efficient kernel (online
			   softmax, scores never stored) */
} clunet_attention_options;

void clunet_attention_options_init(clunet_attention_options *options);
clunet_status clunet_model_set_attention(clunet_model_t *model,
					 const clunet_attention_options *options);

/* ------------------------------------------------- methods that change the output */

/* FreeU (diffusers' enable_freeu(s1, s2, b1, b2)): in the two lowest-
 * resolution up blocks (UpBlock2D / CrossAttnUpBlock2D and their 3-D and
 * motion forms) the first half of the backbone channels is scaled by b1 / b2
 * and each skip is Fourier-filtered with s1 / s2. Off unless all four are
 * non-zero (diffusers' rule). */
typedef struct clunet_freeu {
	float s1, s2, b1, b2;
	int threshold; /* half-width of the scaled frequency box; diffusers uses 1 (0 means 1) */
	int use_fft;   /* 0: direct computation of the 4 scaled frequencies (threshold 1);
			  1: clFFT over whole planes (any threshold; lengths of 2,3,5,7,11,13) */
} clunet_freeu;

/* NULL (or zeros) disables FreeU. Models without FreeU in diffusers
 * (UNet2DModel, UNet1DModel) return CLUNET_ERR_UNSUPPORTED. */
clunet_status clunet_model_set_freeu(clunet_model_t *model, const clunet_freeu *freeu);

/* LoRA: a .safetensors file in diffusers (`unet.<module>.lora.down.weight`,
 * older `<module>.processor.to_q_lora.down.weight`), PEFT
 * (`unet.<module>.lora_A.weight`) or kohya (`lora_unet_<module>.lora_down.weight`
 * with `.alpha`) key form, as diffusers 0.26.3 loads it. Each layer computes
 * W x + b + s * f * up(down(x)), or runs with W + scale * f * up @ down when
 * fused. f is alpha / rank with kohya alphas; for PEFT keys without alphas
 * it is r0 / rank, r0 the rank of the file's first lora_B tensor (diffusers
 * takes that rank as lora_alpha); otherwise 1. s is the scale, except on
 * the layers diffusers runs before it applies the scale (conv_in and the
 * time, class and addition embeddings), where an unfused LoRA runs at 1. One
 * LoRA at a time: loading another replaces it. Text-encoder keys in the file
 * are ignored; a UNet key that matches no layer of the model is an error. */
typedef struct clunet_lora_options {
	float scale; /* cross_attention_kwargs={"scale": s}, or fuse_lora(lora_scale=s); default 1 */
	int fuse;    /* 1: fold into the weights at once (fuse_lora) */
} clunet_lora_options;

void clunet_lora_options_init(clunet_lora_options *options);
clunet_status clunet_model_load_lora(clunet_model_t *model, const char *path,
				     const clunet_lora_options *options);
/* The scale of a loaded, unfused LoRA (no re-planning). */
clunet_status clunet_model_set_lora_scale(clunet_model_t *model, float scale);
/* fuse_lora(lora_scale=scale) / unfuse_lora(). */
clunet_status clunet_model_fuse_lora(clunet_model_t *model, float scale);
clunet_status clunet_model_unfuse_lora(clunet_model_t *model);
/* unload_lora_weights(): drops the LoRA layers; weights it was fused into
 * stay fused (diffusers' fuse-then-unload). */
clunet_status clunet_model_unload_lora(clunet_model_t *model);

/* -------------------------------------------------------------------- cache */

/* Writes the default cache folder (the rule of cache_dir above) into buf. */
clunet_status clunet_cache_default_dir(char *buf, size_t cap);

typedef void (*clunet_cache_entry_fn)(void *user, const char *device_folder, const char *file,
				      uint64_t bytes, int64_t mtime);
/* Calls fn for every entry under dir (NULL: the default folder). */
clunet_status clunet_cache_list(const char *dir, clunet_cache_entry_fn fn, void *user);
/* Removes every entry under dir (NULL: the default folder). */
clunet_status clunet_cache_clear(const char *dir, size_t *removed);

/* ---------------------------------------------------------------- tensor IO */

/* Reads every tensor of a safetensors file into host memory (any dtype).
 * Free with clunet_tensors_free. */
clunet_status clunet_tensors_read(const char *path, clunet_tensor **tensors, size_t *n);
void clunet_tensors_free(clunet_tensor *tensors, size_t n);
/* Writes tensors to a safetensors file (temporary file + rename). */
clunet_status clunet_tensors_write(const char *path, const clunet_tensor *tensors, size_t n);

#ifdef __cplusplus
}
#endif
#endif
