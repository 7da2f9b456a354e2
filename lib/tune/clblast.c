/* CLBlast's own kernel parameters, tuned by `clunet tune`.
 *
 * CLBlast keeps one set of Xgemm parameters per device and precision (its
 * database); CLBlastOverrideParameters replaces it for this process. The
 * search runs every candidate in a worker process (the program named by
 * clunet_tune_options.worker, which calls clunet_tune_worker_main), because a
 * parameter set may crash the driver, hang it, or compute garbage (PoCL:
 * GEMMK=1 sets returned wrong results and an XgemmDirect search hung). The
 * worker times the model's GEMM shapes with that set and checks each result
 * against the plain reference kernel (cl/gemm.cl gemm_ref; relative L2 <=
 * 1e-5); the parent kills a worker past its time limit and counts a crash
 * or a hang as a rejected candidate. The winner is the set with the least
 * time summed over the model's GEMMs (each shape weighted by how often the
 * forward runs it), if it still beats CLBlast's stock parameters by 3 %
 * when the two are timed again in alternation. It goes into the tuning
 * database under RT_CLBLAST_KEY and every later context hands it to CLBlast
 * before its first GEMM (rt_clblast_apply).
 *
 * Candidates force CLBlast's indirect GEMM (XGEMM_MIN_INDIRECT_SIZE = 0,
 * CLBlast's "GemmRoutine" parameter): the Xgemm parameters only matter
 * there. The stock set keeps CLBlast's own choice between its direct and
 * indirect kernels. */
#define _POSIX_C_SOURCE 200809L
#include <clblast_c.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/graph.h"
#include "ops/ops.h"
#include "tune/tune.h"

extern char **environ;

#define N_XG 16
static const char *const xg_names[N_XG] = { "GEMMK", "KREG", "KWG",  "KWI",  "MDIMA", "MDIMC",
					    "MWG",   "NDIMB", "NDIMC", "NWG", "SA",    "SB",
					    "STRM",  "STRN", "VWM",  "VWN" };
#define MIN_INDIRECT "XGEMM_MIN_INDIRECT_SIZE"
#define CB_TOL 1e-5
#define CB_MAX_SHAPES 64

/* ------------------------------------------------------------ parameters */

/* "NAME=V,NAME=V" -> the Xgemm values in xg_names order and the routine
 * threshold; 0 when a name is missing or unknown. */
static int parse_params(const char *s, size_t xg[N_XG], size_t *min_indirect)
{
	unsigned seen = 0;
	int have_mi = 0;
	while (*s) {
		const char *eq = strchr(s, '='), *end;
		char *num_end;
		unsigned long v;
		size_t len;
		int i;
		if (!eq)
			return 0;
		len = (size_t)(eq - s);
		v = strtoul(eq + 1, &num_end, 10);
		if (num_end == eq + 1 || (*num_end && *num_end != ','))
			return 0;
		end = *num_end ? num_end + 1 : num_end;
		for (i = 0; i < N_XG; i++)
			if (strlen(xg_names[i]) == len && !strncmp(s, xg_names[i], len))
				break;
		if (i < N_XG) {
			xg[i] = v;
			seen |= 1u << i;
		} else if (len == strlen(MIN_INDIRECT) && !strncmp(s, MIN_INDIRECT, len)) {
			*min_indirect = v;
			have_mi = 1;
		} else {
			return 0;
		}
		s = end;
	}
	return seen == (1u << N_XG) - 1 && have_mi;
}

static clunet_status override(cl_device_id dev, const char *params, const char *what)
{
	size_t xg[N_XG], mi = 0;
	const char *mi_name = MIN_INDIRECT;
	CLBlastStatusCode s;
	if (!parse_params(params, xg, &mi))
		return cu_fail(CLUNET_ERR_FORMAT, "%s: CLBlast parameters '%s' are not the %d Xgemm "
			       "parameters and " MIN_INDIRECT, what, params, N_XG);
	s = CLBlastOverrideParameters(dev, "Xgemm", CLBlastPrecisionSingle, N_XG, (const char **)xg_names,
				      xg);
	if (s == CLBlastSuccess)
		s = CLBlastOverrideParameters(dev, "GemmRoutine", CLBlastPrecisionSingle, 1,
					      &mi_name, &mi);
	if (s != CLBlastSuccess)
		return cu_fail(CLUNET_ERR_OPENCL, "%s: CLBlastOverrideParameters refused '%s' "
			       "(CLBlast status %d)", what, params, (int)s);
	return CLUNET_OK;
}

clunet_status rt_clblast_apply(rt_ctx *rt, int again)
{
	const char *v;
	clunet_status st;
	if (rt->clblast_applied && !again)
		return CLUNET_OK;
	rt->clblast_applied = 1;
	v = rt_tune_get(rt, RT_CLBLAST_KEY);
	if (!v)
		return CLUNET_OK;
	st = override(rt->device, v, "tuning database");
	if (st) { /* CLBlast's stock parameters still give correct results */
		cu_logf(&rt->log, CLUNET_LOG_WARNING, "%s; CLBlast keeps its own parameters",
			clunet_last_error());
		cu_clear_error();
		return CLUNET_OK;
	}
	cu_logf(&rt->log, CLUNET_LOG_INFO, "CLBlast Xgemm parameters from the tuning database: %s",
		v);
	return CLUNET_OK;
}


/* Up to `want` distinct valid Xgemm sets (GEMMK=0, the variant that ran
 * correctly on every device we know of), a seeded uniform sample of the
 * space CLBlast's own tuner searches, into out[want][256]. */
static int make_candidates(const rt_ctx *rt, int want, uint64_t seed, char (*out)[256])
{
	static const int wg[] = { 16, 32, 64, 128 }, kw[] = { 16, 32 }, dim[] = { 8, 16, 32 },
			 kwi[] = { 2, 8 }, vw[] = { 1, 2, 4, 8 };
	uint64_t seen = 0;
	cu_rng rng;
	int n = 0;
	cu_rng_seed(&rng, seed);
	for (int a = 0; a < 4; a++) /* MWG */
	for (int b = 0; b < 4; b++) /* NWG */
	for (int c = 0; c < 2; c++) /* KWG */
	for (int d = 0; d < 3; d++) /* MDIMC */
	for (int e = 0; e < 3; e++) /* NDIMC */
	for (int f = 0; f < 3; f++) /* MDIMA */
	for (int h = 0; h < 3; h++) /* NDIMB */
	for (int i = 0; i < 2; i++) /* KWI */
	for (int j = 0; j < 4; j++) /* VWM */
	for (int k = 0; k < 4; k++) /* VWN */
	for (int l = 0; l < 16; l++) { /* STRM, STRN, SA, SB */
		int mwg = wg[a], nwg = wg[b], kwg = kw[c], mdimc = dim[d], ndimc = dim[e],
		    mdima = dim[f], ndimb = dim[h], vwm = vw[j], vwn = vw[k];
		int sa = (l >> 2) & 1, sb = (l >> 3) & 1;
		size_t local = ((size_t)sa * kwg * mwg + (size_t)sb * kwg * nwg) * 4;
		uint64_t slot;
		/* CLBlast's Xgemm constraints */
		if (mwg % (mdimc * vwm) || nwg % (ndimc * vwn) || mwg % (mdima * vwm) ||
		    nwg % (ndimb * vwn) || kwg % ((mdimc * ndimc) / mdima) ||
		    kwg % ((mdimc * ndimc) / ndimb) || kwg % kwi[i] ||
		    (size_t)(mdimc * ndimc) > rt->max_wg || local > rt->info.local_mem_bytes)
			continue;
		/* reservoir sampling: every valid set equally likely */
		seen++;
		slot = n < want ? (uint64_t)n : cu_rng_u64(&rng) % seen;
		if (slot >= (uint64_t)want)
			continue;
		snprintf(out[slot], 256,
			 "GEMMK=0,KREG=1,KWG=%d,KWI=%d,MDIMA=%d,MDIMC=%d,MWG=%d,NDIMB=%d,NDIMC=%d,"
			 "NWG=%d,SA=%d,SB=%d,STRM=%d,STRN=%d,VWM=%d,VWN=%d," MIN_INDIRECT "=0",
			 kwg, kwi[i], mdima, mdimc, mwg, ndimb, ndimc, nwg, sa, sb, l & 1,
			 (l >> 1) & 1, vwm, vwn);
		if (n < want)
			n++;
	}
	return n;
}

/* ------------------------------------------------------------ the worker */


static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static const char *arg_value(int argc, char **argv, const char *name)
{
	size_t n = strlen(name);
	for (int i = 2; i < argc; i++)
		if (!strncmp(argv[i], name, n) && argv[i][n] == '=')
			return argv[i] + n + 1;
	return NULL;
}

/* One shape: random operands, the reference result, then CLBlast (one
 * untimed call that compiles, `runs` timed ones, wall clock around the call
 * and a clFinish: CLBlast's event covers only its last kernel). */
static clunet_status worker_shape(rt_ctx *rt, cl_kernel ref, const int *sh, int runs,
				  double run_limit, int garble, double *t_med, double *err, int *slow)
{
	const int ta = sh[0], tb = sh[1], m = sh[2], n = sh[3], k = sh[4], batch = sh[5];
	const int lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
	const size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
	float *ha = malloc(na * batch * 4), *hb = malloc(nb * batch * 4), *hc = malloc(nc * batch * 4),
	      *hr = malloc(nc * batch * 4);
	cl_mem a = NULL, b = NULL, c = NULL, r = NULL;
	cu_rng rng;
	double t[16], num = 0, den = 0;
	size_t gws[3] = { (size_t)n, (size_t)m, (size_t)batch };
	clunet_status st = CLUNET_OK;
	cl_int sa = (cl_int)na, sb = (cl_int)nb, sc = (cl_int)nc;
	/* operands at element offsets and a scale, as the attention GEMMs have them (views
	 * into the activation arena; 1/sqrt(d)) */
	const cl_uint oa = 5, ob = 3, oc = 7;
	float alpha = 0.375f;
	*slow = 0;
	if (!ha || !hb || !hc || !hr) {
		st = cu_fail(CLUNET_ERR_HOST_MEMORY, "CLBlast trial: operands of %dx%dx%d", m, n, k);
		goto out;
	}
	cu_rng_seed(&rng, (uint64_t)(m * 131 + n * 7 + k));
	for (size_t i = 0; i < na * batch; i++)
		ha[i] = 2 * cu_rng_uniform(&rng) - 1;
	for (size_t i = 0; i < nb * batch; i++)
		hb[i] = 2 * cu_rng_uniform(&rng) - 1;
	if ((st = rt_alloc(rt, (na * batch + oa) * 4, "A", &a)) ||
	    (st = rt_alloc(rt, (nb * batch + ob) * 4, "B", &b)) ||
	    (st = rt_alloc(rt, (nc * batch + oc) * 4, "C", &c)) ||
	    (st = rt_alloc(rt, (nc * batch + oc) * 4, "ref", &r)))
		goto out;
	RT_CHECK(clEnqueueWriteBuffer(rt->queue, a, CL_TRUE, oa * 4, na * batch * 4, ha, 0, NULL, NULL),
		 "clEnqueueWriteBuffer", "A");
	RT_CHECK(clEnqueueWriteBuffer(rt->queue, b, CL_TRUE, ob * 4, nb * batch * 4, hb, 0, NULL, NULL),
		 "clEnqueueWriteBuffer", "B");
	{
		const void *args[16] = { &a, &oa, &b, &ob, &r, &oc, &m, &n, &k, &lda, &ldb, &ldc,
					 &sa, &sb, &sc, &alpha };
		const size_t sizes[16] = { sizeof(cl_mem), 4, sizeof(cl_mem), 4, sizeof(cl_mem), 4,
					   4, 4, 4, 4, 4, 4, 4, 4, 4, 4 };
		for (cl_uint i = 0; i < 16; i++)
			RT_CHECK(clSetKernelArg(ref, i, sizes[i], args[i]), "clSetKernelArg", "gemm_ref");
	}
	RT_CHECK(clEnqueueNDRangeKernel(rt->queue, ref, 3, NULL, gws, NULL, 0, NULL, NULL),
		 "clEnqueueNDRangeKernel", "gemm_ref");
	RT_CHECK(clEnqueueReadBuffer(rt->queue, r, CL_TRUE, oc * 4, nc * batch * 4, hr, 0, NULL, NULL),
		 "clEnqueueReadBuffer", "reference");
	if (runs > 16)
		runs = 16;
	for (int i = -1; i < runs; i++) {
		double t0;
		CLBlastStatusCode cs;
		clFinish(rt->queue);
		t0 = cu_now_seconds();
		cs = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor,
						ta ? CLBlastTransposeYes : CLBlastTransposeNo,
						tb ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)m,
						(size_t)n, (size_t)k, alpha, a, oa, (size_t)lda, na, b, ob,
						(size_t)ldb, nb, 0.0f, c, oc, (size_t)ldc, nc,
						(size_t)batch, &rt->queue, NULL);
		if (cs != CLBlastSuccess) {
			st = cu_fail(CLUNET_ERR_OPENCL, "CLBlastSgemmStridedBatched: status %d", (int)cs);
			goto out;
		}
		RT_CHECK(clFinish(rt->queue), "clFinish", "CLBlast trial");
		if (i >= 0) {
			t[i] = cu_now_seconds() - t0;
			if (run_limit > 0 && t[i] > run_limit) {
				*slow = 1;
				*t_med = t[i];
				runs = i + 1;
				break;
			}
		}
	}
	qsort(t, (size_t)runs, sizeof(double), cmp_double);
	if (!*slow)
		*t_med = t[runs / 2];
	RT_CHECK(clEnqueueReadBuffer(rt->queue, c, CL_TRUE, oc * 4, nc * batch * 4, hc, 0, NULL, NULL),
		 "clEnqueueReadBuffer", "C");
	if (garble) /* testing: a parameter set that computes garbage */
		hc[nc * batch / 2] += 1.0f + fabsf(hc[nc * batch / 2]);
	for (size_t i = 0; i < nc * batch; i++) {
		double d = (double)hc[i] - hr[i];
		num += isfinite(hc[i]) ? d * d : INFINITY;
		den += (double)hr[i] * hr[i];
	}
	*err = den > 0 ? sqrt(num / den) : sqrt(num);
out:
	if (a)
		clReleaseMemObject(a);
	if (b)
		clReleaseMemObject(b);
	if (c)
		clReleaseMemObject(c);
	if (r)
		clReleaseMemObject(r);
	free(ha);
	free(hb);
	free(hc);
	free(hr);
	return st;
}

int clunet_tune_worker_main(int argc, char **argv)
{
	const char *dev = arg_value(argc, argv, "device"), *cache = arg_value(argc, argv, "cache"),
		   *params = arg_value(argc, argv, "params"), *fault = arg_value(argc, argv, "fault"),
		   *runs_s = arg_value(argc, argv, "runs"), *limit_s = arg_value(argc, argv, "limit");
	clunet_context_options co;
	rt_ctx *rt = NULL;
	cl_kernel ref[2][2] = { { NULL, NULL }, { NULL, NULL } };
	int runs = runs_s ? atoi(runs_s) : 3, shape_i = 0, rc = 1;
	double limit = limit_s ? atof(limit_s) : 0;
	clunet_status st;
	if (argc < 2 || strcmp(argv[1], CLUNET_TUNE_WORKER_ARG) != 0 || !dev || !params) {
		printf("error: not a tuning worker's arguments\n");
		return 2;
	}
	clunet_context_options_init(&co);
	co.device = dev;
	co.cache_dir = cache && *cache ? cache : NULL;
	co.no_cache = !cache || !*cache;
	st = rt_create(&co, &rt);
	if (st) {
		printf("error: %s\n", clunet_last_error());
		return 1;
	}
	if (strcmp(params, "default") != 0 && (st = override(rt->device, params, "candidate"))) {
		printf("error: %s\n", clunet_last_error());
		goto out;
	}
	/* testing the parent's defences: a driver that crashes or hangs */
	if (fault && !strcmp(fault, "crash")) {
		signal(SIGSEGV, SIG_DFL); /* past any handler the driver installed */
		raise(SIGSEGV);
	}
	if (fault && !strcmp(fault, "hang"))
		for (;;)
			pause();
	for (int i = 2; i < argc; i++) {
		int sh[6];
		double t = 0, err = 0;
		int slow = 0;
		if (strncmp(argv[i], "shape=", 6) != 0)
			continue;
		if (sscanf(argv[i] + 6, "%d,%d,%d,%d,%d,%d", &sh[0], &sh[1], &sh[2], &sh[3], &sh[4],
			   &sh[5]) != 6 || (sh[0] | sh[1]) & ~1 || sh[2] < 1 || sh[3] < 1 ||
		    sh[4] < 1 || sh[5] < 1) {
			printf("error: bad shape '%s'\n", argv[i] + 6);
			goto out;
		}
		if (!ref[sh[0]][sh[1]]) {
			char opts[128];
			snprintf(opts, sizeof(opts), "-cl-std=CL1.2 -DVW=16 -DMR=6 -DNB=1 -DNR=4 -DTA=%d "
				 "-DTB=%d", sh[0], sh[1]);
			st = rt_kernel_create(rt, "gemm.cl", opts, "gemm_ref", &ref[sh[0]][sh[1]]);
			if (st) {
				printf("error: %s\n", clunet_last_error());
				goto out;
			}
		}
		st = worker_shape(rt, ref[sh[0]][sh[1]], sh, runs, limit,
				  fault && !strcmp(fault, "wrong"), &t, &err, &slow);
		if (st) {
			printf("error: %s\n", clunet_last_error());
			goto out;
		}
		printf("shape %d %s %.9g %.3g\n", shape_i++, slow ? "slow" : err <= CB_TOL ? "ok" : "wrong",
		       t, err);
		fflush(stdout);
	}
	rt_cache_flush(rt);
	printf("done\n");
	rc = 0;
out:
	fflush(stdout);
	for (int i = 0; i < 4; i++)
		if (ref[i / 2][i % 2])
			clReleaseKernel(ref[i / 2][i % 2]);
	rt_destroy(rt);
	return rc;
}

/* ------------------------------------------------------------ the parent */

typedef struct cb_shape {
	int s[6];
	int count; /* ops of the forward with this shape */
} cb_shape;

typedef enum cb_verdict { CB_OK, CB_WRONG, CB_SLOW, CB_CRASHED, CB_HUNG, CB_FAILED } cb_verdict;

static const char *const verdict_names[] = { "ok", "wrong result", "too slow", "crashed",
					     "hung", "failed" };

/* Runs one worker over every shape; fills times[] (per shape) on CB_OK and
 * a short reason in why. */
static cb_verdict run_worker(rt_ctx *rt, const cu_tune_clblast_opts *o, const char *params,
			     const char *fault, const cb_shape *sh, int nsh, double run_limit,
			     double *times, char *why, size_t why_cap)
{
	char *args[CB_MAX_SHAPES + 12], buf[8][300], shape_buf[CB_MAX_SHAPES][80], line[1024];
	int fds[2], na = 0, done = 0, got = 0, status = 0;
	size_t used = 0;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	double deadline = cu_now_seconds() + o->limit_seconds;
	cb_verdict v = CB_FAILED;
	snprintf(why, why_cap, "no answer");
	if (pipe(fds) != 0) {
		snprintf(why, why_cap, "pipe: %s", strerror(errno));
		return CB_FAILED;
	}
	args[na++] = (char *)o->worker;
	args[na++] = CLUNET_TUNE_WORKER_ARG;
	snprintf(buf[0], sizeof(buf[0]), "device=%d:%d", rt->info.platform_index,
		 rt->info.device_index);
	snprintf(buf[1], sizeof(buf[1]), "cache=%s", rt->cache_dir ? rt->cache_root : "");
	snprintf(buf[2], sizeof(buf[2]), "params=%s", params);
	snprintf(buf[3], sizeof(buf[3]), "runs=%d", o->runs);
	snprintf(buf[4], sizeof(buf[4]), "limit=%.6g", run_limit);
	snprintf(buf[5], sizeof(buf[5]), "fault=%s", fault ? fault : "none");
	for (int i = 0; i < 6; i++)
		args[na++] = buf[i];
	for (int i = 0; i < nsh; i++) {
		snprintf(shape_buf[i], sizeof(shape_buf[i]), "shape=%d,%d,%d,%d,%d,%d", sh[i].s[0],
			 sh[i].s[1], sh[i].s[2], sh[i].s[3], sh[i].s[4], sh[i].s[5]);
		args[na++] = shape_buf[i];
	}
	args[na] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	posix_spawn_file_actions_addclose(&fa, fds[1]);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	errno = posix_spawn(&pid, o->worker, &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (errno) {
		snprintf(why, why_cap, "cannot start %s: %s", o->worker, strerror(errno));
		close(fds[0]);
		return CB_FAILED;
	}
	/* read lines until EOF or the deadline */
	for (;;) {
		struct pollfd pf = { fds[0], POLLIN, 0 };
		double left = deadline - cu_now_seconds();
		ssize_t r;
		char *nl;
		if (left <= 0) {
			kill(pid, SIGKILL);
			v = CB_HUNG;
			snprintf(why, why_cap, "no result within %.0f s; killed", o->limit_seconds);
			break;
		}
		if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		r = read(fds[0], line + used, sizeof(line) - 1 - used);
		if (r <= 0)
			break;
		used += (size_t)r;
		line[used] = 0;
		while ((nl = strchr(line, '\n'))) {
			int idx;
			char word[16];
			double t, e;
			*nl = 0;
			if (!strcmp(line, "done")) {
				done = 1;
			} else if (!strncmp(line, "error: ", 7)) {
				size_t l = strlen(line + 7) < why_cap ? strlen(line + 7) : why_cap - 1;
				memcpy(why, line + 7, l);
				why[l] = 0;
			} else if (sscanf(line, "shape %d %15s %lf %lf", &idx, word, &t, &e) == 4 &&
				   idx >= 0 && idx < nsh) {
				times[idx] = t;
				got++;
				if (!strcmp(word, "wrong") && v != CB_WRONG) {
					v = CB_WRONG;
					snprintf(why, why_cap, "relative error %.2g at %dx%dx%d", e,
						 sh[idx].s[2], sh[idx].s[3], sh[idx].s[4]);
				} else if (!strcmp(word, "slow") && v == CB_FAILED) {
					v = CB_SLOW;
					snprintf(why, why_cap, "%.3f s at %dx%dx%d, over the limit", t,
						 sh[idx].s[2], sh[idx].s[3], sh[idx].s[4]);
				}
			}
			used -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, used + 1);
		}
		if (used >= sizeof(line) - 1)
			used = 0; /* an overlong line: drop it */
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (v == CB_HUNG)
		return v;
	if (done && got == nsh) /* every answer is in, whatever happened at exit */
		return v == CB_WRONG || v == CB_SLOW ? v : (snprintf(why, why_cap, "ok"), CB_OK);
	if (WIFSIGNALED(status)) {
		snprintf(why, why_cap, "killed by signal %d", WTERMSIG(status));
		return CB_CRASHED;
	}
	if (!done) {
		if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && !strcmp(why, "no answer"))
			snprintf(why, why_cap, "exit status %d", WEXITSTATUS(status));
		return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? CB_FAILED : CB_CRASHED;
	}
	snprintf(why, why_cap, "%d of %d shapes measured", got, nsh);
	return CB_FAILED;
}

static double weighted(const cb_shape *sh, int nsh, const double *t)
{
	double s = 0;
	for (int i = 0; i < nsh; i++)
		s += sh[i].count * t[i];
	return s;
}

/* CLUNET_TUNE_FAULT=crash:N,hang:M,wrong:K makes candidate N crash, M hang
 * and K compute a wrong result in the worker (testing the defences). */
static const char *fault_for(int cand)
{
	const char *e = getenv("CLUNET_TUNE_FAULT");
	static const char *const kinds[] = { "crash", "hang", "wrong" };
	if (!e)
		return NULL;
	for (int k = 0; k < 3; k++) {
		const char *p = e;
		size_t n = strlen(kinds[k]);
		while ((p = strstr(p, kinds[k]))) {
			if (p[n] == ':' && atoi(p + n + 1) == cand)
				return kinds[k];
			p += n;
		}
	}
	return NULL;
}

clunet_status cu_clblast_tune(cu_plan *p, const cu_tune_clblast_opts *o, cu_clblast_stats *stats)
{
	cu_graph *g = p->g;
	cb_shape sh[CB_MAX_SHAPES];
	int nsh = 0, n_cand, best = -1;
	char (*cand)[256] = NULL, why[512], key[160];
	double *t_def = NULL, *t_c = NULL, def_total, best_total = INFINITY;
	clunet_status st = CLUNET_OK;
	memset(stats, 0, sizeof(*stats));
	for (int i = 0; i < g->nops; i++) {
		int s[6], k;
		if (!op_gemm_clblast_shape(p, &g->ops[i], s))
			continue;
		for (k = 0; k < nsh; k++)
			if (!memcmp(sh[k].s, s, sizeof(s)))
				break;
		if (k == nsh) {
			if (nsh == CB_MAX_SHAPES)
				continue; /* the rest weigh in through the ones measured */
			memcpy(sh[nsh].s, s, sizeof(s));
			sh[nsh++].count = 0;
		}
		sh[k].count++;
	}
	stats->shapes = nsh;
	if (nsh == 0 || o->candidates <= 0)
		return CLUNET_OK;
	if (!o->worker || !*o->worker)
		return cu_fail(CLUNET_ERR_ARGUMENT, "tuning CLBlast needs a worker program "
			       "(clunet_tune_options.worker); set clblast_candidates to 0 to skip it");
	cand = calloc((size_t)o->candidates, sizeof(*cand));
	t_def = calloc((size_t)nsh, sizeof(double));
	t_c = calloc((size_t)nsh * (size_t)(o->candidates + 1), sizeof(double));
	if (!cand || !t_def || !t_c) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	n_cand = make_candidates(p->rt, o->candidates, o->seed, cand);
	/* CLBlast's stock parameters: the default to beat */
	{
		cb_verdict v = run_worker(p->rt, o, "default", fault_for(0), sh, nsh, 0, t_def, why,
					  sizeof(why));
		if (v != CB_OK) {
			st = cu_fail(CLUNET_ERR_OPENCL, "tuning CLBlast: its stock parameters %s (%s)",
				     verdict_names[v], why);
			goto out;
		}
	}
	def_total = weighted(sh, nsh, t_def);
	stats->default_s = def_total;
	if (o->progress)
		o->progress(o->user, 0, n_cand + 1, "clblast stock parameters", "default", def_total,
			    def_total);
	for (int c = 0; c < n_cand; c++) {
		double *t = t_c + (size_t)c * nsh, tot;
		double run_limit = 0;
		cb_verdict v;
		for (int i = 0; i < nsh; i++)
			run_limit = fmax(run_limit, 10 * t_def[i] + 0.05);
		stats->candidates++;
		v = run_worker(p->rt, o, cand[c], fault_for(c + 1), sh, nsh, run_limit, t, why,
			       sizeof(why));
		tot = v == CB_OK ? weighted(sh, nsh, t) : INFINITY;
		if (v == CB_WRONG)
			stats->wrong++;
		else if (v == CB_SLOW)
			stats->too_slow++;
		else if (v != CB_OK)
			stats->failed++;
		if (tot < best_total) {
			best_total = tot;
			best = c;
		}
		if (o->progress) {
			snprintf(key, sizeof(key), "clblast candidate %d/%d", c + 1, n_cand);
			o->progress(o->user, c + 1, n_cand + 1, key,
				    v == CB_OK ? cand[c] : why, def_total, tot);
		}
	}
	stats->tuned_s = def_total;
	if (best >= 0 && best_total < def_total) {
		/* confirm in alternation against the stock parameters (the machine drifts) */
		double sd = 0, sb = 0;
		int ok = 1;
		for (int r = 0; ok && r < 2; r++) {
			ok = run_worker(p->rt, o, "default", NULL, sh, nsh, 0, t_def, why,
					sizeof(why)) == CB_OK;
			sd += weighted(sh, nsh, t_def);
			ok = ok && run_worker(p->rt, o, cand[best], NULL, sh, nsh, 0, t_c, why,
					      sizeof(why)) == CB_OK;
			sb += weighted(sh, nsh, t_c);
		}
		if (ok && sb <= 0.97 * sd) {
			stats->default_s = sd / 2;
			stats->tuned_s = sb / 2;
			snprintf(stats->choice, sizeof(stats->choice), "%s", cand[best]);
			st = rt_tune_put(p->rt, RT_CLBLAST_KEY, cand[best]);
			if (!st)
				st = rt_clblast_apply(p->rt, 1);
		} else {
			stats->unconfirmed = 1;
		}
	}
	if (!stats->choice[0] && rt_tune_get(p->rt, RT_CLBLAST_KEY)) {
		/* an earlier run's choice lost to the stock parameters this time */
		rt_tune_del(p->rt, RT_CLBLAST_KEY);
		cu_logf(&p->rt->log, CLUNET_LOG_INFO, "CLBlast's stock parameters won: the tuned "
			"ones are dropped from the database (this process keeps them until it ends)");
	}
	if (!stats->choice[0])
		snprintf(stats->choice, sizeof(stats->choice), "default");
out:
	free(cand);
	free(t_def);
	free(t_c);
	return st;
}
