/* FreeU's two operations on the up path (diffusers utils/torch_utils.py):
 * scaling the first half of the backbone channels, and the Fourier filter
 * on a skip. The filter has two implementations: the direct one (default)
 * computes only the four DFT coefficients that threshold 1 scales; the
 * clFFT one transforms whole planes and takes any threshold. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clFFT.h>

#include "ops.h"

#define FREEU_OPTS "-cl-std=CL1.2"

static int bad(cu_graph *g, const char *fmt, const cu_tensor *t)
{
	char s[96];
	cu_fail(CLUNET_ERR_ARGUMENT, fmt, cu_shape_str(t, s, sizeof(s)));
	return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
}

/* ---- scale the first channels ---- */

static clunet_status scale_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *t = cu_t(p->g, op->in[0]);
	int total = (int)cu_numel(t), ch = (int)t->ne[1];
	int plane = (int)(total / (t->ne[0] * ch));
	clunet_status st = cu_op_kernel(p, op, "freeu.cl", FREEU_OPTS, "scale_channels_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiiif", op->in[0], op->out, total, plane, ch, op->ip[0],
				 (double)op->fp[0]);
	cu_op_range(op, 1, (size_t)total, 1, 1);
	return st;
}
static const cu_op_impl scale_impl = { .kind = "freeu_scale", .prepare = scale_prepare };

int op_scale_channels(cu_graph *g, int x, int nch, float f)
{
	int y, opi;
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	if (cu_t(g, x)->ndim < 2 || nch < 0 || nch > cu_t(g, x)->ne[1])
		return bad(g, "scale_channels: bad input %s", cu_t(g, x));
	y = cu_graph_act(g, cu_t(g, x)->ndim, cu_t(g, x)->ne);
	opi = cu_graph_op(g, &scale_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = nch;
	g->ops[opi].fp[0] = f;
	g->ops[opi].flops = (double)cu_numel(cu_t(g, x));
	return y;
}

/* ---- direct filter (threshold 1) ---- */

static clunet_status direct_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *t = cu_t(p->g, op->in[0]);
	int planes = (int)(t->ne[0] * t->ne[1]);
	clunet_status st = cu_op_kernel(p, op, "freeu.cl", FREEU_OPTS, "freeu_direct_f32");
	if (!st)
		st = cu_set_args(p, op, "ttiiif", op->in[0], op->out, planes, (int)t->ne[2],
				 (int)t->ne[3], (double)op->fp[0]);
	cu_op_range(op, 1, (size_t)planes, 1, 1);
	if (p->rt->is_cpu) {
		op->use_lws = 1;
		op->lws[0] = op->lws[1] = op->lws[2] = 1;
	}
	return st;
}
static const cu_op_impl direct_impl = { .kind = "freeu_filter", .prepare = direct_prepare };

/* ---- clFFT filter ---- */

static pthread_mutex_t fft_lock = PTHREAD_MUTEX_INITIALIZER;
static int fft_users;

static clunet_status fft_acquire(void)
{
	clunet_status st = CLUNET_OK;
	pthread_mutex_lock(&fft_lock);
	if (fft_users == 0) {
		/* what clfftInitSetupData() does: the header's __inline definition
		 * has no external copy, so unoptimised builds cannot link it */
		clfftSetupData d;
		clfftStatus s;
		memset(&d, 0, sizeof(d));
		d.major = clfftVersionMajor;
		d.minor = clfftVersionMinor;
		d.patch = clfftVersionPatch;
		s = clfftSetup(&d);
		if (s != CLFFT_SUCCESS)
			st = cu_fail(CLUNET_ERR_OPENCL, "clfftSetup failed: clFFT status %d", (int)s);
	}
	if (!st)
		fft_users++;
	pthread_mutex_unlock(&fft_lock);
	return st;
}

static void fft_release(void)
{
	pthread_mutex_lock(&fft_lock);
	if (fft_users > 0 && --fft_users == 0)
		clfftTeardown();
	pthread_mutex_unlock(&fft_lock);
}

typedef struct fft_state {
	clfftPlanHandle plan;
	int have_plan;
	cl_mem z;           /* planes x H x W complex, offset 0 (clFFT takes no offsets) */
	cl_kernel pack, mask, unpack;
	size_t total, planes;
	int h, w;
} fft_state;

static void fft_state_free(void *v)
{
	fft_state *f = v;
	if (!f)
		return;
	if (f->have_plan)
		clfftDestroyPlan(&f->plan);
	if (f->z)
		clReleaseMemObject(f->z);
	if (f->pack)
		clReleaseKernel(f->pack);
	if (f->mask)
		clReleaseKernel(f->mask);
	if (f->unpack)
		clReleaseKernel(f->unpack);
	free(f);
	fft_release();
}

/* clFFT 2.12 radices */
static int fft_length_ok(int n)
{
	static const int radix[] = { 2, 3, 5, 7, 11, 13 };
	for (size_t i = 0; i < CU_ARRAY_LEN(radix); i++)
		while (n % radix[i] == 0)
			n /= radix[i];
	return n == 1;
}

static clunet_status fft_kernel(cu_plan *p, const char *name, cl_kernel *k)
{
	cu_op tmp;
	clunet_status st;
	memset(&tmp, 0, sizeof(tmp));
	st = cu_op_kernel(p, &tmp, "freeu.cl", FREEU_OPTS, name);
	*k = tmp.kernel;
	return st;
}

#define SETARG(k, i, v) clSetKernelArg(k, i, sizeof(v), &(v))

static clunet_status fft_prepare(cu_plan *p, cu_op *op)
{
	const cu_tensor *x = cu_t(p->g, op->in[0]), *y = cu_t(p->g, op->out);
	fft_state *f;
	size_t lengths[2];
	clfftStatus s;
	cl_int err = 0;
	cl_uint xo = (cl_uint)x->off, yo = (cl_uint)y->off;
	int total, planes, t = op->ip[0];
	float sc = op->fp[0];
	clunet_status st = fft_acquire();
	if (st)
		return st;
	f = cu_calloc(1, sizeof(fft_state));
	if (!f) {
		fft_release();
		return CLUNET_ERR_HOST_MEMORY;
	}
	op->priv = f;
	op->priv_free = fft_state_free;
	f->planes = (size_t)(x->ne[0] * x->ne[1]);
	f->h = (int)x->ne[2];
	f->w = (int)x->ne[3];
	f->total = f->planes * (size_t)f->h * (size_t)f->w;
	total = (int)f->total;
	planes = (int)f->planes;
	f->z = clCreateBuffer(p->rt->context, CL_MEM_READ_WRITE, f->total * 8, NULL, &err);
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clCreateBuffer", "FreeU FFT scratch");
	lengths[0] = (size_t)f->w;
	lengths[1] = (size_t)f->h;
	s = clfftCreateDefaultPlan(&f->plan, p->rt->context, CLFFT_2D, lengths);
	if (s == CLFFT_SUCCESS) {
		f->have_plan = 1;
		s = clfftSetPlanPrecision(f->plan, CLFFT_SINGLE);
	}
	if (s == CLFFT_SUCCESS)
		s = clfftSetLayout(f->plan, CLFFT_COMPLEX_INTERLEAVED, CLFFT_COMPLEX_INTERLEAVED);
	if (s == CLFFT_SUCCESS)
		s = clfftSetResultLocation(f->plan, CLFFT_INPLACE);
	if (s == CLFFT_SUCCESS)
		s = clfftSetPlanBatchSize(f->plan, f->planes);
	if (s == CLFFT_SUCCESS)
		s = clfftSetPlanDistance(f->plan, (size_t)f->h * f->w, (size_t)f->h * f->w);
	if (s == CLFFT_SUCCESS)
		s = clfftBakePlan(f->plan, 1, &p->rt->queue, NULL, NULL);
	if (s != CLFFT_SUCCESS)
		return cu_fail(CLUNET_ERR_OPENCL, "clFFT plan for %dx%d planes failed: clFFT status %d",
			       f->h, f->w, (int)s);
	if ((st = fft_kernel(p, "freeu_pack_f32", &f->pack)) != CLUNET_OK ||
	    (st = fft_kernel(p, "freeu_mask_f32", &f->mask)) != CLUNET_OK ||
	    (st = fft_kernel(p, "freeu_unpack_f32", &f->unpack)) != CLUNET_OK)
		return st;
	err |= SETARG(f->pack, 0, x->mem);
	err |= SETARG(f->pack, 1, xo);
	err |= SETARG(f->pack, 2, f->z);
	err |= SETARG(f->pack, 3, total);
	err |= SETARG(f->mask, 0, f->z);
	err |= SETARG(f->mask, 1, planes);
	err |= SETARG(f->mask, 2, f->h);
	err |= SETARG(f->mask, 3, f->w);
	err |= SETARG(f->mask, 4, t);
	err |= SETARG(f->mask, 5, sc);
	err |= SETARG(f->unpack, 0, f->z);
	err |= SETARG(f->unpack, 1, y->mem);
	err |= SETARG(f->unpack, 2, yo);
	err |= SETARG(f->unpack, 3, total);
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clSetKernelArg", "FreeU FFT kernels");
	op->kernel_name = "clfft";
	return CLUNET_OK;
}

static clunet_status fft_enqueue(cu_plan *p, cu_op *op, cl_event *ev)
{
	fft_state *f = op->priv;
	size_t g1 = f->total, g3[3] = { (size_t)f->w, (size_t)f->h, f->planes };
	cl_command_queue q = p->rt->queue;
	clfftStatus s;
	cl_int err = clEnqueueNDRangeKernel(q, f->pack, 1, NULL, &g1, NULL, 0, NULL, NULL);
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clEnqueueNDRangeKernel", "freeu_pack_f32");
	s = clfftEnqueueTransform(f->plan, CLFFT_FORWARD, 1, &q, 0, NULL, NULL, &f->z, NULL, NULL);
	if (s == CLFFT_SUCCESS) {
		err = clEnqueueNDRangeKernel(q, f->mask, 3, NULL, g3, NULL, 0, NULL, NULL);
		if (err != CL_SUCCESS)
			return rt_cl_fail(err, "clEnqueueNDRangeKernel", "freeu_mask_f32");
		/* the backward transform scales by 1 / (H W) by default */
		s = clfftEnqueueTransform(f->plan, CLFFT_BACKWARD, 1, &q, 0, NULL, NULL, &f->z, NULL,
					  NULL);
	}
	if (s != CLFFT_SUCCESS)
		return cu_fail(CLUNET_ERR_OPENCL, "clfftEnqueueTransform(%dx%d) failed: clFFT status %d",
			       f->h, f->w, (int)s);
	err = clEnqueueNDRangeKernel(q, f->unpack, 1, NULL, &g1, NULL, 0, NULL, ev);
	if (err != CL_SUCCESS)
		return rt_cl_fail(err, "clEnqueueNDRangeKernel", "freeu_unpack_f32");
	return CLUNET_OK;
}
static const cu_op_impl fft_impl = { .kind = "freeu_filter_fft", .prepare = fft_prepare, .enqueue = fft_enqueue };

int op_freeu_filter(cu_graph *g, int x, float scale, int threshold, int use_fft)
{
	const cu_tensor *t;
	int y, opi;
	if (g->status || x < 0)
		return cu_graph_fail(g, g->status ? g->status : CLUNET_ERR_ARGUMENT);
	t = cu_t(g, x);
	if (t->ndim != 4)
		return bad(g, "freeu_filter: input %s is not [N, C, H, W]", t);
	if (threshold < 1) {
		cu_fail(CLUNET_ERR_ARGUMENT, "FreeU: threshold %d must be at least 1", threshold);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (!use_fft && threshold != 1) {
		cu_fail(CLUNET_ERR_ARGUMENT, "FreeU: the direct filter computes threshold 1 only "
			"(threshold %d needs the clFFT filter)", threshold);
		return cu_graph_fail(g, CLUNET_ERR_ARGUMENT);
	}
	if (use_fft && (!fft_length_ok((int)t->ne[2]) || !fft_length_ok((int)t->ne[3]))) {
		cu_fail(CLUNET_ERR_UNSUPPORTED, "FreeU: clFFT cannot transform a %lldx%lld skip (lengths "
			"must factor into 2, 3, 5, 7, 11 and 13); use the direct filter",
			(long long)t->ne[2], (long long)t->ne[3]);
		return cu_graph_fail(g, CLUNET_ERR_UNSUPPORTED);
	}
	y = cu_graph_act(g, 4, t->ne);
	opi = cu_graph_op(g, use_fft ? &fft_impl : &direct_impl, &x, 1, y);
	if (opi < 0)
		return -1;
	g->ops[opi].ip[0] = threshold;
	g->ops[opi].fp[0] = scale;
	g->ops[opi].flops = 16.0 * (double)cu_numel(cu_t(g, x));
	return y;
}
