/* The autotuner behind `clunet tune`: every op of a plan that offers
 * variants (cu_op_impl.tune_key / .variant) is tried with each candidate on
 * the real activations of a forward, in op order, so every op sees the
 * inputs it will see in use. A candidate counts only if its output equals
 * the default's within 1e-5 relative L2 and it stays under the time limit;
 * the fastest, if it still beats the default by 3 % when the two are timed
 * again in alternation (the machine's speed drifts), goes into the per-device database (lib/tune/db.c), which every
 * later plan on this device and driver reads. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"

#define TUNE_TOL 1e-5

typedef struct tuned_key {
	char key[256];
	double default_s, best_s;
} tuned_key;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static clunet_status read_output(cu_plan *p, const cu_op *op, float *buf)
{
	const cu_tensor *t = cu_t(p->g, op->out);
	RT_CHECK(clEnqueueReadBuffer(p->rt->queue, t->mem, CL_TRUE, t->off * 4, cu_tensor_bytes(t),
				     buf, 0, NULL, NULL),
		 "clEnqueueReadBuffer", "tuning output");
	return CLUNET_OK;
}

/* One untimed run (compiles on PoCL), then `runs` timed ones; *slow when a
 * run exceeds limit_s (the remaining runs are skipped). */
static clunet_status time_op(cu_plan *p, int i, int runs, double limit_s, double *median,
			     int *slow)
{
	double t[16];
	clunet_status st;
	*slow = 0;
	if (runs > 16)
		runs = 16;
	st = cu_plan_enqueue_op(p, i, NULL);
	if (st)
		return st;
	RT_CHECK(clFinish(p->rt->queue), "clFinish", "tuning");
	for (int r = 0; r < runs; r++) {
		cl_event ev = NULL;
		cl_ulong t0 = 0, t1 = 0;
		st = cu_plan_enqueue_op(p, i, &ev);
		if (st)
			return st;
		RT_CHECK(clWaitForEvents(1, &ev), "clWaitForEvents", "tuning");
		clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof(t0), &t0, NULL);
		clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof(t1), &t1, NULL);
		clReleaseEvent(ev);
		t[r] = (double)(t1 - t0) * 1e-9;
		if (t[r] > limit_s) {
			*slow = 1;
			return CLUNET_OK;
		}
	}
	qsort(t, (size_t)runs, sizeof(double), cmp_double);
	*median = t[runs / 2];
	return CLUNET_OK;
}

static double rel_l2(const float *a, const float *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - ref[i];
		if (!isfinite(a[i]))
			return INFINITY;
		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

static clunet_status set_variant(cu_plan *p, cu_op *op, const char *v)
{
	snprintf(op->variant, sizeof(op->variant), "%s", v);
	return op->impl->prepare(p, op);
}

/* Tunes op i (whose key is new): leaves it prepared with the winner. */
static clunet_status tune_op(cu_plan *p, int i, const char *key, int runs, double limit_s,
			     tuned_key *res, char *best, size_t best_cap, cu_tune_stats *stats)
{
	cu_op *op = &p->g->ops[i];
	size_t n = (size_t)cu_numel(cu_t(p->g, op->out));
	float *ref = malloc(n * 4), *got = malloc(n * 4);
	double t_def = 0, t_best;
	char cand[48];
	int slow;
	clunet_status st;
	if (!ref || !got) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	st = set_variant(p, op, "default");
	if (!st)
		st = time_op(p, i, runs, INFINITY, &t_def, &slow);
	if (!st)
		st = read_output(p, op, ref);
	if (st)
		goto out;
	snprintf(best, best_cap, "default");
	t_best = t_def;
	for (int c = 0; op->impl->variant(p, op, c, cand, sizeof(cand)); c++) {
		double t = 0, e;
		stats->candidates++;
		st = set_variant(p, op, cand);
		if (st) { /* a variant the device cannot build: not a candidate */
			cu_clear_error();
			stats->rejected++;
			continue;
		}
		st = time_op(p, i, runs, limit_s > 0 ? limit_s : 10 * t_def + 0.05, &t, &slow);
		if (!st)
			st = read_output(p, op, got);
		if (st) {
			cu_clear_error();
			stats->rejected++;
			continue;
		}
		e = rel_l2(got, ref, n);
		if (!(e <= TUNE_TOL)) {
			stats->rejected++;
			continue;
		}
		if (slow) {
			stats->too_slow++;
			continue;
		}
		if (t < t_best) {
			t_best = t;
			snprintf(best, best_cap, "%s", cand);
		}
	}
	if (strcmp(best, "default") != 0) {
		/* The machine's speed moves between the default's timing and the
		 * candidates': confirm the winner in alternating pairs, and keep it only
		 * if it still wins by 3 %. */
		double td = 0, tb = 0, sd = 0, sb = 0;
		for (int r = 0; !st && r < 3; r++) {
			st = set_variant(p, op, "default");
			if (!st)
				st = time_op(p, i, runs, INFINITY, &td, &slow);
			if (!st)
				st = set_variant(p, op, best);
			if (!st)
				st = time_op(p, i, runs, INFINITY, &tb, &slow);
			sd += td;
			sb += tb;
		}
		if (st)
			goto out;
		if (sb > 0.97 * sd) {
			stats->unconfirmed++;
			snprintf(best, best_cap, "default");
			t_best = t_def;
		} else {
			t_def = sd / 3;
			t_best = sb / 3;
		}
	}
	st = set_variant(p, op, best);
	if (!st) /* the winner's output for the ops after this one */
		st = cu_plan_enqueue_op(p, i, NULL);
	if (!st)
		st = rt_tune_put(p->rt, key, best);
	snprintf(res->key, sizeof(res->key), "%s", key);
	res->default_s = t_def;
	res->best_s = t_best;
out:
	free(ref);
	free(got);
	return st;
}

clunet_status cu_plan_tune(cu_plan *p, const void *const *host_inputs, int runs, double limit_s,
			   cu_tune_progress progress, void *user, cu_tune_stats *stats)
{
	cu_graph *g = p->g;
	tuned_key *done = calloc((size_t)g->nops, sizeof(tuned_key));
	int n_done = 0;
	clunet_status st;
	memset(stats, 0, sizeof(*stats));
	if (!p->rt->profiling)
		return cu_fail(CLUNET_ERR_ARGUMENT, "tuning needs a context created with profiling");
	if (!done)
		return CLUNET_ERR_HOST_MEMORY;
	if (runs < 1)
		runs = 1;
	st = cu_plan_write_inputs(p, host_inputs);
	for (int i = 0; !st && i < g->nops; i++) {
		cu_op *op = &g->ops[i];
		char key[256], best[48];
		int k;
		if (!op->impl->tune_key || !op->impl->variant ||
		    !op->impl->tune_key(p, op, key, sizeof(key))) {
			st = cu_plan_enqueue_op(p, i, NULL);
			continue;
		}
		for (k = 0; k < n_done; k++)
			if (!strcmp(done[k].key, key))
				break;
		if (k < n_done) { /* same shape as an op tuned earlier in this run */
			st = set_variant(p, op, "");
			if (!st)
				st = cu_plan_enqueue_op(p, i, NULL);
		} else {
			st = tune_op(p, i, key, runs, limit_s, &done[n_done], best, sizeof(best),
				     stats);
			if (st)
				break;
			n_done++;
			stats->keys++;
			if (progress)
				progress(user, i, g->nops, key, best, done[k].default_s,
					 done[k].best_s);
		}
		stats->default_s += done[k].default_s;
		stats->tuned_s += done[k].best_s;
	}
	if (!st) {
		cl_int err = clFinish(p->rt->queue);
		if (err != CL_SUCCESS)
			st = rt_cl_fail(err, "clFinish", "tuning");
	}
	free(done);
	if (st)
		return st;
	/* the cache keeps the programs of the tuned plan (every one has run, the
	 * winners included), not the hundreds of candidates that lost */
	{
		cl_program *keep = calloc((size_t)g->nops + 1, sizeof(cl_program));
		size_t nk = 0;
		for (int i = 0; keep && i < g->nops; i++)
			if (g->ops[i].kernel &&
			    clGetKernelInfo(g->ops[i].kernel, CL_KERNEL_PROGRAM, sizeof(cl_program),
					    &keep[nk], NULL) == CL_SUCCESS)
				nk++;
		if (keep)
			rt_cache_keep_only(p->rt, keep, nk);
		free(keep);
		rt_cache_flush(p->rt);
	}
	return rt_tune_save(p->rt);
}
