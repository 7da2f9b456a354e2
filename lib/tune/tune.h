/* The autotuner's internal interface (lib/tune/): op variants on a plan
 * (tune.c, declared with the plan in core/graph.h) and CLBlast's own
 * parameters through worker processes (clblast.c). */
#ifndef CLUNET_TUNE_H
#define CLUNET_TUNE_H

#include "core/graph.h"

typedef struct cu_tune_clblast_opts {
	const char *worker;   /* program that runs clunet_tune_worker_main */
	int candidates;       /* parameter sets to try (0: none) */
	int runs;             /* timed runs per shape */
	double limit_seconds; /* per worker process, compilation included */
	uint64_t seed;        /* which sample of the parameter space */
	cu_tune_progress progress;
	void *user;
} cu_tune_clblast_opts;

typedef struct cu_clblast_stats {
	int shapes;      /* distinct GEMM shapes that may run on CLBlast */
	int candidates, wrong, too_slow, failed; /* failed: crashed, hung or refused */
	int unconfirmed; /* the first-pass winner lost the alternating re-check */
	double default_s, tuned_s; /* weighted GEMM time of one forward */
	char choice[256];          /* the parameters kept, or "default" */
} cu_clblast_stats;

/* Searches CLBlast's Xgemm parameters for the GEMM shapes of the plan that
 * may run on CLBlast; stores a winner in the tuning database (not saved)
 * and hands it to CLBlast. Does nothing when there are no such shapes. */
clunet_status cu_clblast_tune(cu_plan *p, const cu_tune_clblast_opts *o, cu_clblast_stats *stats);

#endif
