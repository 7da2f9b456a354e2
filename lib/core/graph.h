/* The graph: tensors (shape, kind, device memory) and the ops that produce
 * them, recorded in execution order by the model code. The planner
 * (plan.c) gives every activation a place in one arena, reusing memory once
 * a tensor is dead, and lets every op prepare its kernel; the executor
 * enqueues all ops on the context's in-order queue without host syncs.
 *
 *     cu_graph *g = cu_graph_new(rt);
 *     int x = cu_graph_input(g, 0, CU_F32, 4, shape);      // forward input slot 0
 *     int y = op_group_norm(g, x, gamma, beta, 32, 1e-5f, CU_ACT_SILU, -1);
 *     cu_graph_set_output(g, y);
 *     cu_plan *p;  cu_plan_create(g, &p);                   // arena + kernels
 *     cu_plan_run(p, host_inputs, host_output);           // enqueue only, one read
 *
 * Builder calls never fail loudly: the first error is kept in the graph
 * (g->status, message in clunet_last_error()) and later calls do nothing and
 * return -1, so block code can read like the diffusers forward() it mirrors.
 */
#ifndef CLUNET_CORE_GRAPH_H
#define CLUNET_CORE_GRAPH_H

#include "runtime/runtime.h"

#define CU_MAXD 6
#define CU_MAX_IN 8

typedef enum cu_tkind {
	CU_T_ACT,    /* produced by an op; lives in the arena */
	CU_T_INPUT,  /* copied in from the host at run time; lives in the arena */
	CU_T_WEIGHT, /* constant device buffer, owned elsewhere */
} cu_tkind;

typedef enum cu_dtype {
	CU_F32,
	CU_I32,
} cu_dtype;

typedef enum cu_act {
	CU_ACT_NONE = 0,
	CU_ACT_SILU = 1,
	CU_ACT_MISH = 2,
	CU_ACT_GELU = 3, /* exact erf */
	CU_ACT_RELU = 4,
} cu_act;

typedef struct cu_tensor {
	int ndim;
	int64_t ne[CU_MAXD]; /* row-major shape, ne[0] outermost (torch order) */
	cu_tkind kind;
	cu_dtype dtype;
	int alias;           /* >= 0: a reshape of that tensor, same memory */
	int input_slot;      /* CU_T_INPUT: which host input fills it */
	cl_mem mem;          /* weights: their buffer; others: the arena (after planning) */
	size_t off;          /* offset in elements */
	size_t view_off;     /* a view: elements past its root's start */
	int first, last;     /* defining op and last reading op (planner) */
} cu_tensor;

struct cu_op;
struct cu_plan;

/* How an op kind runs. prepare() chooses the kernel variant and sets its
 * arguments once per plan; enqueue() defaults to launching op->kernel. */
typedef struct cu_op_impl {
	const char *kind; /* profile name, e.g. "conv2d" */
	clunet_status (*prepare)(struct cu_plan *p, struct cu_op *op);
	clunet_status (*enqueue)(struct cu_plan *p, struct cu_op *op, cl_event *ev);
	/* Tuning (both optional). tune_key: the op's shape signature in buf, 0 when
	 * this instance has nothing to tune. variant: the i-th candidate ("pv=2,ord=1"),
	 * 0 past the last one. prepare() reads the choice through cu_op_variant(). */
	int (*tune_key)(const struct cu_plan *p, const struct cu_op *op, char *buf, size_t cap);
	int (*variant)(const struct cu_plan *p, const struct cu_op *op, int i, char *buf,
		       size_t cap);
} cu_op_impl;

typedef struct cu_op {
	const cu_op_impl *impl;
	int in[CU_MAX_IN]; /* tensor ids, -1 for an absent optional input */
	int n_in;
	int out;
	int ip[20];        /* integer parameters, meaning per op kind */
	float fp[8];       /* float parameters */
	double flops;
	/* set by prepare() */
	cl_kernel kernel;
	const char *kernel_name;
	cl_uint dims;
	size_t gws[3], lws[3];
	int use_lws;
	char variant[48];           /* tuning: forced candidate ("" = database, else default) */
	void *priv;                 /* state an op's prepare() made (scratch, library plans) */
	void (*priv_free)(void *);  /* how the plan frees it */
} cu_op;

typedef struct cu_graph {
	rt_ctx *rt;
	cu_tensor *t;
	int nt, cap_t;
	cu_op *ops;
	int nops, cap_ops;
	int output;
	int n_inputs;
	clunet_status status; /* first builder error */
} cu_graph;

cu_graph *cu_graph_new(rt_ctx *rt);
void cu_graph_free(cu_graph *g);

/* Records an error in the graph (first one wins) and returns -1. */
int cu_graph_fail(cu_graph *g, clunet_status st);

int cu_graph_input(cu_graph *g, int slot, cu_dtype dt, int ndim, const int64_t *ne);
int cu_graph_weight(cu_graph *g, cl_mem mem, size_t off, cu_dtype dt, int ndim,
		    const int64_t *ne);
/* A new activation tensor of the given shape (used by op builders). */
int cu_graph_act(cu_graph *g, int ndim, const int64_t *ne);
/* Same data, new shape (numel must match). */
int cu_reshape(cu_graph *g, int x, int ndim, const int64_t *ne);
/* A view of numel(ne) elements of x starting `offset` elements in (same
 * memory). Ops may read views, and write them: several ops can fill parts
 * of one tensor made with cu_graph_act (memory lives from the first writer
 * to the last reader). */
int cu_view(cu_graph *g, int x, int64_t offset, int ndim, const int64_t *ne);
void cu_graph_set_output(cu_graph *g, int t);

/* Appends an op; returns its index or -1. */
int cu_graph_op(cu_graph *g, const cu_op_impl *impl, const int *in, int n_in, int out);

static inline cu_tensor *cu_t(cu_graph *g, int id)
{
	return &g->t[id];
}
int64_t cu_numel(const cu_tensor *t);
/* "[2, 64, 32, 32]" into buf. */
const char *cu_shape_str(const cu_tensor *t, char *buf, size_t cap);

/* ---- plans ---- */

typedef struct cu_plan {
	cu_graph *g;
	rt_ctx *rt;
	cl_mem arena;
	size_t arena_bytes;
	cl_mem dummy;     /* bound to absent optional inputs */
	double flops;
	cl_event *events; /* per op, when profiling */
} cu_plan;

clunet_status cu_plan_create(cu_graph *g, cu_plan **out);
/* Frees the plan and its graph. */
void cu_plan_free(cu_plan *p);

/* Host data for every input slot (converted to the slot's dtype, f32 or
 * i32); copies inputs in, enqueues every op, reads the output back into
 * host_out, cu_plan_output_bytes() long (blocking: the only host sync of a
 * forward). */
clunet_status cu_plan_run(cu_plan *p, const void *const *host_inputs, float *host_out);
size_t cu_plan_output_bytes(const cu_plan *p);
/* The pieces of cu_plan_run, for the tuner: copy the inputs in; enqueue op i. */
clunet_status cu_plan_write_inputs(cu_plan *p, const void *const *host_inputs);
clunet_status cu_plan_enqueue_op(cu_plan *p, int i, cl_event *ev);
size_t cu_tensor_bytes(const cu_tensor *t);

/* Tunes every op of the plan that has variants (lib/tune/tune.c): runs the
 * ops in order on host_inputs; for each op key not seen yet, times the
 * default and every candidate with events (runs each), rejects candidates
 * whose output differs from the default's by more than 1e-5 (relative L2)
 * or that run longer than limit_s, keeps the fastest, records it in the
 * database and leaves the op prepared with it. */
typedef struct cu_tune_stats {
	int keys, candidates, rejected, too_slow;
	int unconfirmed; /* winners that lost the alternating re-check */
	double default_s, tuned_s; /* summed over every tuned op of the plan */
} cu_tune_stats;
typedef void (*cu_tune_progress)(void *user, int op, int n_ops, const char *key,
				 const char *best, double default_s, double best_s);
clunet_status cu_plan_tune(cu_plan *p, const void *const *host_inputs, int runs, double limit_s,
			   cu_tune_progress progress, void *user, cu_tune_stats *stats);

/* Sets kernel arguments from tensors and scalars. fmt characters:
 * 't' a tensor id (buffer + element offset; -1 binds the dummy buffer),
 * 'i' an int, 'f' a float (passed as double). */
clunet_status cu_set_args(cu_plan *p, cu_op *op, const char *fmt, ...);
/* Creates op->kernel from cl/<source> with options. */
clunet_status cu_op_kernel(cu_plan *p, cu_op *op, const char *source, const char *options,
			   const char *kernel);
/* The variant prepare() should build: op->variant when set (the tuner), else
 * the tuning database's entry for the op's key, else "" (the default). */
const char *cu_op_variant(cu_plan *p, const cu_op *op);
/* Integer field "name=value" of a variant string, or def. */
int cu_variant_int(const char *variant, const char *name, int def);
/* Enqueues op->kernel with the op's geometry (what ops without their own
 * enqueue() do). */
clunet_status cu_op_launch(cu_plan *p, cu_op *op, cl_event *ev);
/* Launch geometry helper: 1 to 3 dims, no explicit local size. */
void cu_op_range(cu_op *op, cl_uint dims, size_t g0, size_t g1, size_t g2);

#endif
