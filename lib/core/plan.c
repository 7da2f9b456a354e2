/* The planner and the executor.
 *
 * Planning walks the ops in order: an op's output gets arena space just
 * before the op (best fit among free blocks, else the end of the arena grows)
 * and a tensor's space is returned right after its last reader. Outputs are
 * placed before inputs die, so an op never writes over what it reads. The
 * arena's final size is the peak activation memory. Then every op prepares
 * its kernel with arguments bound once; running a plan only enqueues. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "graph.h"

#define ARENA_ALIGN 64 /* bytes: room for float16 vector loads */

typedef struct block {
	size_t off, size;
} block;

typedef struct allocator {
	block *free;
	size_t n, cap;
	size_t end;
} allocator;

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) / a * a;
}

static int alloc_take(allocator *a, size_t size, size_t *off)
{
	size_t best = (size_t)-1;
	size = align_up(size ? size : 4, ARENA_ALIGN);
	for (size_t i = 0; i < a->n; i++)
		if (a->free[i].size >= size && (best == (size_t)-1 || a->free[i].size < a->free[best].size))
			best = i;
	if (best != (size_t)-1) {
		*off = a->free[best].off;
		a->free[best].off += size;
		a->free[best].size -= size;
		if (a->free[best].size == 0) {
			memmove(&a->free[best], &a->free[best + 1], (a->n - best - 1) * sizeof(block));
			a->n--;
		}
		return 1;
	}
	/* grow: if the last free block touches the end, extend it */
	if (a->n && a->free[a->n - 1].off + a->free[a->n - 1].size == a->end) {
		*off = a->free[a->n - 1].off;
		a->end = *off + size;
		a->n--;
		return 1;
	}
	*off = a->end;
	a->end += size;
	return 1;
}

static int alloc_give(allocator *a, size_t off, size_t size)
{
	size_t i = 0;
	size = align_up(size ? size : 4, ARENA_ALIGN);
	while (i < a->n && a->free[i].off < off)
		i++;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		block *nb = cu_realloc(a->free, cap * sizeof(block));
		if (!nb)
			return 0;
		a->free = nb;
		a->cap = cap;
	}
	memmove(&a->free[i + 1], &a->free[i], (a->n - i) * sizeof(block));
	a->free[i].off = off;
	a->free[i].size = size;
	a->n++;
	/* merge with neighbours */
	if (i + 1 < a->n && a->free[i].off + a->free[i].size == a->free[i + 1].off) {
		a->free[i].size += a->free[i + 1].size;
		memmove(&a->free[i + 1], &a->free[i + 2], (a->n - i - 2) * sizeof(block));
		a->n--;
	}
	if (i > 0 && a->free[i - 1].off + a->free[i - 1].size == a->free[i].off) {
		a->free[i - 1].size += a->free[i].size;
		memmove(&a->free[i], &a->free[i + 1], (a->n - i - 1) * sizeof(block));
		a->n--;
	}
	return 1;
}

static int root_of(const cu_graph *g, int t)
{
	while (g->t[t].alias >= 0)
		t = g->t[t].alias;
	return t;
}

static size_t tensor_bytes(const cu_tensor *t)
{
	return (size_t)cu_numel(t) * 4;
}

size_t cu_tensor_bytes(const cu_tensor *t)
{
	return tensor_bytes(t);
}

static clunet_status assign_memory(cu_graph *g, size_t *peak, size_t **offsets)
{
	allocator a = { 0 };
	size_t *off = cu_calloc((size_t)g->nt, sizeof(size_t));
	int out_root;
	if (!off)
		return CLUNET_ERR_HOST_MEMORY;
	for (int i = 0; i < g->nt; i++)
		g->t[i].first = g->t[i].last = -1;
	for (int i = 0; i < g->nops; i++) {
		cu_op *op = &g->ops[i];
		int r = root_of(g, op->out);
		if (g->t[r].first < 0)
			g->t[r].first = i;
		g->t[r].last = i;
		for (int k = 0; k < op->n_in; k++) {
			if (op->in[k] < 0)
				continue;
			r = root_of(g, op->in[k]);
			g->t[r].last = i;
		}
	}
	out_root = root_of(g, g->output);
	g->t[out_root].last = g->nops; /* never freed */
	/* inputs first: they are written before op 0 */
	for (int i = 0; i < g->nt; i++) {
		cu_tensor *t = &g->t[i];
		if (t->kind == CU_T_INPUT && t->alias < 0) {
			alloc_take(&a, tensor_bytes(t), &off[i]);
			if (t->last < 0)
				t->last = 0;
		}
	}
	for (int i = 0; i < g->nops; i++) {
		int r = root_of(g, g->ops[i].out);
		if (g->t[r].kind == CU_T_ACT && g->t[r].first == i)
			alloc_take(&a, tensor_bytes(&g->t[r]), &off[r]);
		for (int j = 0; j < g->nt; j++) {
			cu_tensor *t = &g->t[j];
			if (t->alias >= 0 || t->kind == CU_T_WEIGHT || t->last != i)
				continue;
			if (!alloc_give(&a, off[j], tensor_bytes(t))) {
				free(a.free);
				free(off);
				return CLUNET_ERR_HOST_MEMORY;
			}
		}
	}
	free(a.free);
	*peak = a.end;
	*offsets = off;
	return CLUNET_OK;
}

clunet_status cu_plan_create(cu_graph *g, cu_plan **out)
{
	cu_plan *p;
	size_t *off = NULL;
	clunet_status st;
	*out = NULL;
	if (g->status)
		return g->status;
	if (g->output < 0)
		return cu_fail(CLUNET_ERR_ARGUMENT, "internal: graph without output");
	p = cu_calloc(1, sizeof(cu_plan));
	if (!p)
		return CLUNET_ERR_HOST_MEMORY;
	p->g = g;
	p->rt = g->rt;
	st = assign_memory(g, &p->arena_bytes, &off);
	if (st)
		goto fail;
	/* kernels take element offsets and counts as 32-bit integers */
	if (p->arena_bytes / 4 > INT32_MAX) {
		st = cu_fail(CLUNET_ERR_DEVICE_MEMORY, "activation arena: %zu bytes is more than "
			     "clunet addresses (8 GiB)", p->arena_bytes);
		goto fail;
	}
	st = rt_alloc_large(g->rt, p->arena_bytes, "activation arena", &p->arena);
	if (st)
		goto fail;
	st = rt_alloc(g->rt, 64, "dummy buffer", &p->dummy);
	if (st)
		goto fail;
	for (int i = 0; i < g->nt; i++) {
		cu_tensor *t = &g->t[i];
		if (t->kind == CU_T_WEIGHT)
			continue;
		t->mem = p->arena;
		t->off = off[root_of(g, i)] / 4 + t->view_off;
	}
	free(off);
	off = NULL;
	for (int i = 0; i < g->nops; i++) {
		cu_op *op = &g->ops[i];
		st = op->impl->prepare(p, op);
		if (st)
			goto fail;
		p->flops += op->flops;
	}
	p->events = cu_calloc((size_t)g->nops, sizeof(cl_event));
	if (!p->events) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto fail;
	}
	*out = p;
	return CLUNET_OK;
fail:
	free(off);
	p->g = NULL; /* the caller still owns g on failure */
	cu_plan_free(p);
	return st;
}

static void release_events(cu_plan *p)
{
	if (!p->events || !p->g)
		return;
	for (int i = 0; i < p->g->nops; i++) {
		if (p->events[i]) {
			clReleaseEvent(p->events[i]);
			p->events[i] = NULL;
		}
	}
}

void cu_plan_free(cu_plan *p)
{
	if (!p)
		return;
	release_events(p);
	rt_free_large(p->arena);
	if (p->dummy)
		clReleaseMemObject(p->dummy);
	cu_graph_free(p->g);
	free(p->events);
	free(p);
}

clunet_status cu_op_launch(cu_plan *p, cu_op *op, cl_event *ev)
{
	cl_int err = clEnqueueNDRangeKernel(p->rt->queue, op->kernel, op->dims, NULL, op->gws,
					    op->use_lws ? op->lws : NULL, 0, NULL, ev);
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clEnqueueNDRangeKernel", op->kernel_name);
	return CLUNET_OK;
}

size_t cu_plan_output_bytes(const cu_plan *p)
{
	return tensor_bytes(&p->g->t[p->g->output]);
}

clunet_status cu_plan_write_inputs(cu_plan *p, const void *const *host_inputs)
{
	cu_graph *g = p->g;
	for (int i = 0; i < g->nt; i++) {
		cu_tensor *t = &g->t[i];
		cl_int err;
		if (t->kind != CU_T_INPUT || t->alias >= 0)
			continue;
		err = clEnqueueWriteBuffer(p->rt->queue, t->mem, CL_FALSE, t->off * 4,
					   tensor_bytes(t), host_inputs[t->input_slot], 0, NULL, NULL);
		if (err != CL_SUCCESS)
			return rt_cl_fail(err, "clEnqueueWriteBuffer", "forward input");
	}
	return CLUNET_OK;
}

clunet_status cu_plan_enqueue_op(cu_plan *p, int i, cl_event *ev)
{
	cu_op *op = &p->g->ops[i];
	if (op->n_in == 0 && !op->kernel && !op->impl->enqueue)
		return CLUNET_OK;
	return op->impl->enqueue ? op->impl->enqueue(p, op, ev) : cu_op_launch(p, op, ev);
}

clunet_status cu_plan_run(cu_plan *p, const void *const *host_inputs, float *host_out)
{
	cu_graph *g = p->g;
	cl_command_queue q = p->rt->queue;
	clunet_status st;
	cl_int err;
	const cu_tensor *o;

	release_events(p);
	st = cu_plan_write_inputs(p, host_inputs);
	if (st)
		goto out;
	for (int i = 0; i < g->nops; i++) {
		st = cu_plan_enqueue_op(p, i, p->rt->profiling ? &p->events[i] : NULL);
		if (st)
			goto out;
	}
	o = &g->t[g->output];
	err = clEnqueueReadBuffer(q, o->mem, CL_TRUE, o->off * 4, tensor_bytes(o), host_out, 0, NULL,
				  NULL);
	if (err != CL_SUCCESS)
		st = rt_cl_fail(err, "clEnqueueReadBuffer", "forward output");
	else
		rt_cache_flush(p->rt); /* every kernel has run once: complete binaries */
out:
	if (st)
		clFinish(q); /* leave no half-run work behind */
	return st;
}

clunet_status cu_set_args(cu_plan *p, cu_op *op, const char *fmt, ...)
{
	va_list ap;
	cl_uint idx = 0;
	cl_int err = CL_SUCCESS;
	va_start(ap, fmt);
	for (const char *f = fmt; *f && err == CL_SUCCESS; f++) {
		switch (*f) {
		case 't': {
			int id = va_arg(ap, int);
			cl_mem m = id >= 0 ? p->g->t[id].mem : p->dummy;
			cl_uint off = id >= 0 ? (cl_uint)p->g->t[id].off : 0;
			err = clSetKernelArg(op->kernel, idx++, sizeof(cl_mem), &m);
			if (err == CL_SUCCESS)
				err = clSetKernelArg(op->kernel, idx++, sizeof(cl_uint), &off);
			break;
		}
		case 'i': {
			cl_int v = va_arg(ap, int);
			err = clSetKernelArg(op->kernel, idx++, sizeof(v), &v);
			break;
		}
		case 'f': {
			cl_float v = (cl_float)va_arg(ap, double);
			err = clSetKernelArg(op->kernel, idx++, sizeof(v), &v);
			break;
		}
		default:
			err = CL_INVALID_VALUE;
		}
	}
	va_end(ap);
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clSetKernelArg", op->kernel_name);
	return CLUNET_OK;
}

clunet_status cu_op_kernel(cu_plan *p, cu_op *op, const char *source, const char *options,
			   const char *kernel)
{
	op->kernel_name = kernel;
	if (op->kernel) { /* prepared again (the tuner trying variants) */
		clReleaseKernel(op->kernel);
		op->kernel = NULL;
	}
	return rt_kernel_create(p->rt, source, options, kernel, &op->kernel);
}

/* CLUNET_VARIANT="KEY PREFIX:VARIANT;...": the variant of every op whose
 * tuning key starts with the prefix (benchmarks and tests), e.g.
 * "conv_pv:vw=8,pv=2,ocr=6;attention_q:kb=4". Returns it in buf or NULL. */
static const char *forced_variant(const char *key, char *buf, size_t cap)
{
	const char *e = getenv("CLUNET_VARIANT");
	while (e && *e) {
		const char *colon = strchr(e, ':'), *end = strchr(e, ';');
		if (!end)
			end = e + strlen(e);
		if (colon && colon < end && !strncmp(key, e, (size_t)(colon - e))) {
			size_t n = (size_t)(end - colon - 1);
			if (n >= cap)
				n = cap - 1;
			memcpy(buf, colon + 1, n);
			buf[n] = 0;
			return buf;
		}
		e = *end ? end + 1 : end;
	}
	return NULL;
}

const char *cu_op_variant(cu_plan *p, const cu_op *op)
{
	char key[256];
	static _Thread_local char forced[128];
	const char *v;
	if (op->variant[0])
		return op->variant;
	if (!op->impl->tune_key || !op->impl->tune_key(p, op, key, sizeof(key)))
		return "";
	v = forced_variant(key, forced, sizeof(forced));
	if (v)
		return v;
	v = rt_tune_get(p->rt, key);
	return v ? v : "";
}

int cu_variant_int(const char *variant, const char *name, int def)
{
	size_t n = strlen(name);
	for (const char *s = variant; s && *s;) {
		if (!strncmp(s, name, n) && s[n] == '=')
			return atoi(s + n + 1);
		s = strchr(s, ',');
		if (s)
			s++;
	}
	return def;
}

void cu_op_range(cu_op *op, cl_uint dims, size_t g0, size_t g1, size_t g2)
{
	op->dims = dims;
	op->gws[0] = g0 ? g0 : 1;
	op->gws[1] = g1 ? g1 : 1;
	op->gws[2] = g2 ? g2 : 1;
	op->use_lws = 0;
}
