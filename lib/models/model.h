/* What every model shares: loading a checkpoint folder, the weight source
 * (safetensors or seeded random values), input preparation, the plan cache
 * keyed by input shapes, and forward. Each model file supplies a model_vt. */
#ifndef CLUNET_MODELS_MODEL_H
#define CLUNET_MODELS_MODEL_H

#include "io/config.h"
#include "io/safetensors.h"
#include "nn/nn.h"

#define MODEL_MAX_SLOTS 64
#define MODEL_MAX_PLANS 4

/* One graph input, converted from the caller's tensor. */
typedef struct model_slot {
	cu_dtype dtype;
	int ndim;
	int64_t ne[CU_MAXD];
	void *data;    /* owned */
	char name[64]; /* when the model names its slots (model_slot_name) */
} model_slot;

typedef struct model_inputs {
	model_slot slot[MODEL_MAX_SLOTS];
	int n;
	char sig[2048]; /* what the graph depends on: slot names, dtypes and shapes */
} model_inputs;

struct clunet_model;

typedef struct model_vt {
	const char *class_name;
	/* Parses and checks config.json into m->config. */
	clunet_status (*parse_config)(struct clunet_model *m, const cfg *c);
	/* Checks the caller's tensors and converts them into graph input slots. */
	clunet_status (*prepare_inputs)(struct clunet_model *m, const clunet_tensor *in, size_t n,
					model_inputs *out);
	/* Appends the forward graph for these inputs; returns the output tensor. */
	int (*build)(struct clunet_model *m, nn_ctx *c, const model_inputs *in);
	/* The smallest valid input shapes (slots without data), for the build
	 * that checks every weight while loading. */
	clunet_status (*load_inputs)(struct clunet_model *m, model_inputs *out);
	/* Example (random) inputs for benchmarks. */
	clunet_status (*example_inputs)(struct clunet_model *m, const clunet_example_shape *shape,
					clunet_tensor *out, size_t *n, void **storage);
	/* Weight names may use the deprecated attention names (query/key/value/proj_attn). */
	int deprecated_attention;
	/* diffusers gives the class FreeU and LoRA loading */
	int freeu, lora;
} model_vt;

typedef struct model_plan {
	char sig[2048];
	cu_plan *plan;
	uint64_t last_use;
} model_plan;

struct clunet_model {
	rt_ctx *rt;
	const model_vt *vt;
	char *dir;
	void *config;
	st_set *weights;       /* NULL with random weights, and once loaded */
	int random_weights;
	int zero_copy;         /* float32 weights used where the file maps them (map_weight) */
	size_t mapped_weights; /* how many: the mapping stays while they live */
	int loaded;
	uint64_t seed;
	nn_store *store;
	model_plan plans[MODEL_MAX_PLANS];
	uint64_t use_counter;
	model_inputs cur;      /* inputs of the current forward */
	float *out;            /* output of the last forward */
	size_t out_cap;
	clunet_op_profile *profile;
	size_t n_profile;
	clunet_tensor example[MODEL_MAX_SLOTS];
	void *example_storage;
	clunet_freeu freeu;
	int freeu_on;
	clunet_attention_options attention;
};

typedef struct clunet_model model;

/* Slot helpers for prepare_inputs. */
const clunet_tensor *model_find_input(const clunet_tensor *in, size_t n, const char *name);
/* Adds a float32 slot converted from t, which must be a float tensor of
 * ndim dims (shape checked by the caller). */
clunet_status model_slot_f32(model_inputs *mi, const clunet_tensor *t);
/* Names the last slot added (the name joins the signature); the builder
 * finds it again with model_slot_find. */
void model_slot_name(model_inputs *mi, const char *name);
int model_slot_find(const model_inputs *mi, const char *name);
/* A slot with a shape and no data (for building without running). */
clunet_status model_slot_shape(model_inputs *mi, cu_dtype dt, int ndim, const int64_t *ne);
/* A float32 slot of n values from a caller-made array (copied). */
clunet_status model_slot_values(model_inputs *mi, cu_dtype dt, int ndim, const int64_t *ne,
				const void *values);
const char *model_tensor_shape(const clunet_tensor *t, char *buf, size_t cap);

/* Drops every plan (the graph changed: FreeU, LoRA). */
void model_drop_plans(model *m);

extern const model_vt unet2d_vt;
extern const model_vt unet1d_vt;
extern const model_vt unet2dcond_vt;

#endif
