#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cu_graph *cu_graph_new(rt_ctx *rt)
{
	cu_graph *g = cu_calloc(1, sizeof(cu_graph));
	if (g) {
		g->rt = rt;
		g->output = -1;
	}
	return g;
}

void cu_graph_free(cu_graph *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->nops; i++) {
		if (g->ops[i].kernel)
			clReleaseKernel(g->ops[i].kernel);
		if (g->ops[i].priv_free)
			g->ops[i].priv_free(g->ops[i].priv);
	}
	free(g->t);
	free(g->ops);
	free(g);
}

int cu_graph_fail(cu_graph *g, clunet_status st)
{
	if (g->status == CLUNET_OK)
		g->status = st;
	return -1;
}

int64_t cu_numel(const cu_tensor *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->ndim; i++)
		n *= t->ne[i];
	return n;
}

const char *cu_shape_str(const cu_tensor *t, char *buf, size_t cap)
{
	size_t k = 0;
	k += (size_t)snprintf(buf + k, cap - k, "[");
	for (int i = 0; i < t->ndim && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
	if (k < cap)
		snprintf(buf + k, cap - k, "]");
	return buf;
}

static int new_tensor(cu_graph *g, cu_tkind kind, cu_dtype dt, int ndim, const int64_t *ne_in)
{
	cu_tensor *t;
	int64_t ne[CU_MAXD];
	if (g->status)
		return -1;
	if (ndim < 0 || ndim > CU_MAXD) {
		cu_fail(CLUNET_ERR_ARGUMENT, "internal: tensor with %d dimensions", ndim);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	/* ne_in may point into g->t, which the realloc below can move */
	memcpy(ne, ne_in, (size_t)ndim * sizeof(int64_t));
	if (g->nt == g->cap_t) {
		int cap = g->cap_t ? 2 * g->cap_t : 256;
		cu_tensor *nt = cu_realloc(g->t, (size_t)cap * sizeof(cu_tensor));
		if (!nt)
			return cu_graph_fail(g, CLUNET_ERR_HOST_MEMORY);
		g->t = nt;
		g->cap_t = cap;
	}
	t = &g->t[g->nt];
	memset(t, 0, sizeof(*t));
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++) {
		if (ne[i] < 0) {
			cu_fail(CLUNET_ERR_ARGUMENT, "internal: negative dimension");
			return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
		}
		t->ne[i] = ne[i];
	}
	t->kind = kind;
	t->dtype = dt;
	t->alias = -1;
	t->input_slot = -1;
	t->first = t->last = -1;
	return g->nt++;
}

int cu_graph_input(cu_graph *g, int slot, cu_dtype dt, int ndim, const int64_t *ne)
{
	int id = new_tensor(g, CU_T_INPUT, dt, ndim, ne);
	if (id >= 0) {
		g->t[id].input_slot = slot;
		if (slot + 1 > g->n_inputs)
			g->n_inputs = slot + 1;
	}
	return id;
}

int cu_graph_weight(cu_graph *g, cl_mem mem, size_t off, cu_dtype dt, int ndim, const int64_t *ne)
{
	int id = new_tensor(g, CU_T_WEIGHT, dt, ndim, ne);
	if (id >= 0) {
		g->t[id].mem = mem;
		g->t[id].off = off;
	}
	return id;
}

int cu_graph_act(cu_graph *g, int ndim, const int64_t *ne)
{
	return new_tensor(g, CU_T_ACT, CU_F32, ndim, ne);
}

int cu_reshape(cu_graph *g, int x, int ndim, const int64_t *ne)
{
	int id, src;
	int64_t n = 1;
	char a[96];
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	for (int i = 0; i < ndim; i++)
		n *= ne[i];
	if (n != cu_numel(&g->t[x])) {
		cu_fail(CLUNET_ERR_ARGUMENT, "internal: reshape of %s to %lld elements",
			cu_shape_str(&g->t[x], a, sizeof(a)), (long long)n);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	id = new_tensor(g, g->t[x].kind, g->t[x].dtype, ndim, ne);
	if (id < 0)
		return id;
	src = x;
	while (g->t[x].alias >= 0)
		x = g->t[x].alias;
	g->t[id].alias = x;
	g->t[id].view_off = g->t[src].view_off;
	g->t[id].mem = g->t[x].mem;
	g->t[id].off = g->t[src].off;
	g->t[id].input_slot = -1;
	return id;
}

int cu_view(cu_graph *g, int x, int64_t offset, int ndim, const int64_t *ne)
{
	int id, root;
	int64_t n = 1;
	size_t base;
	char a[96];
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	for (int i = 0; i < ndim; i++)
		n *= ne[i];
	if (offset < 0 || offset + n > cu_numel(&g->t[x])) {
		cu_fail(CLUNET_ERR_ARGUMENT, "internal: view of %lld elements at %lld in %s", (long long)n,
			(long long)offset, cu_shape_str(&g->t[x], a, sizeof(a)));
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	base = g->t[x].view_off;
	id = new_tensor(g, g->t[x].kind, g->t[x].dtype, ndim, ne);
	if (id < 0)
		return id;
	root = x;
	while (g->t[root].alias >= 0)
		root = g->t[root].alias;
	g->t[id].alias = root;
	g->t[id].view_off = base + (size_t)offset;
	g->t[id].mem = g->t[x].mem;
	g->t[id].off = g->t[x].off + (size_t)offset;
	g->t[id].input_slot = -1;
	return id;
}

void cu_graph_set_output(cu_graph *g, int t)
{
	if (t < 0)
		cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	g->output = t;
}

int cu_graph_op(cu_graph *g, const cu_op_impl *impl, const int *in, int n_in, int out)
{
	cu_op *op;
	if (g->status)
		return -1;
	for (int i = 0; i < n_in; i++)
		if (in[i] < -1 || in[i] >= g->nt)
			return cu_graph_fail(g, cu_fail(CLUNET_ERR_ARGUMENT, "internal: bad op input"));
	if (out < 0)
		return cu_graph_fail(g, cu_fail(CLUNET_ERR_ARGUMENT, "internal: bad op output"));
	if (g->nops == g->cap_ops) {
		int cap = g->cap_ops ? 2 * g->cap_ops : 256;
		cu_op *no = cu_realloc(g->ops, (size_t)cap * sizeof(cu_op));
		if (!no)
			return cu_graph_fail(g, CLUNET_ERR_HOST_MEMORY);
		g->ops = no;
		g->cap_ops = cap;
	}
	op = &g->ops[g->nops];
	memset(op, 0, sizeof(*op));
	op->impl = impl;
	op->n_in = n_in;
	for (int i = 0; i < CU_MAX_IN; i++)
		op->in[i] = i < n_in ? in[i] : -1;
	op->out = out;
	return g->nops++;
}
