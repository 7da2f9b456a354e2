/* LoRA files: the key forms diffusers 0.26.3 loads for a UNet, matched to
 * the model's layers, then handed to the weight store (nn_store_lora_*),
 * which adds the low-rank paths to the graph or folds them into the weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef struct layer_ref {
	char prefix[256];
	char flat[256]; /* kohya's form: '.' -> '_' */
	int out, in, kh, kw;
} layer_ref;

typedef struct layer_list {
	layer_ref *v;
	int n, cap;
	int oom;
} layer_list;

static void add_layer(void *user, const char *prefix, int out, int in, int kh, int kw)
{
	layer_list *l = user;
	layer_ref *r;
	if (l->n == l->cap) {
		int cap = l->cap ? 2 * l->cap : 256;
		layer_ref *v = realloc(l->v, (size_t)cap * sizeof(layer_ref));
		if (!v) {
			l->oom = 1;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	r = &l->v[l->n++];
	snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
	snprintf(r->flat, sizeof(r->flat), "%s", prefix);
	for (char *p = r->flat; *p; p++)
		if (*p == '.')
			*p = '_';
	r->out = out;
	r->in = in;
	r->kh = kh;
	r->kw = kw;
}

static const layer_ref *find_layer(const layer_list *l, const char *name, int flat)
{
	for (int i = 0; i < l->n; i++)
		if (!strcmp(flat ? l->v[i].flat : l->v[i].prefix, name))
			return &l->v[i];
	return NULL;
}

typedef enum { PART_DOWN, PART_UP, PART_ALPHA } part;

/* One LoRA layer being assembled from the file's tensors. */
typedef struct pending {
	const layer_ref *layer;
	const st_tensor *t[3];
} pending;

static int ends_with(const char *s, const char *suf, size_t *stem)
{
	size_t n = strlen(s), m = strlen(suf);
	if (n <= m || strcmp(s + n - m, suf))
		return 0;
	*stem = n - m;
	return 1;
}

static int starts_with(const char *s, const char *pre)
{
	return !strncmp(s, pre, strlen(pre));
}

/* The module path and part of a (prefix-stripped) diffusers / PEFT key;
 * 0 if the name is not a LoRA tensor. */
static int split_key(const char *k, char *module, size_t cap, part *pt)
{
	static const struct { const char *suffix; part p; } forms[] = {
		{ ".lora.down.weight", PART_DOWN }, { ".lora.up.weight", PART_UP },
		{ ".lora_A.weight", PART_DOWN }, { ".lora_B.weight", PART_UP },
		{ ".lora_A.default.weight", PART_DOWN }, { ".lora_B.default.weight", PART_UP },
		{ ".lora_linear_layer.down.weight", PART_DOWN },
		{ ".lora_linear_layer.up.weight", PART_UP },
		{ ".lora_down.weight", PART_DOWN }, { ".lora_up.weight", PART_UP },
		{ ".down.weight", PART_DOWN }, { ".up.weight", PART_UP }, /* attention processors */
		{ ".alpha", PART_ALPHA },
	};
	size_t stem;
	for (size_t i = 0; i < CU_ARRAY_LEN(forms); i++) {
		if (!ends_with(k, forms[i].suffix, &stem))
			continue;
		if (stem >= cap)
			return 0;
		memcpy(module, k, stem);
		module[stem] = 0;
		*pt = forms[i].p;
		/* the attention-processor form: <attn>.processor.to_q_lora */
		{
			char *proc = strstr(module, ".processor.");
			size_t ml;
			if (proc) {
				char name[128];
				snprintf(name, sizeof(name), "%s", proc + 11);
				ml = strlen(name);
				if (ml > 5 && !strcmp(name + ml - 5, "_lora"))
					name[ml - 5] = 0;
				if (!strcmp(name, "to_out"))
					snprintf(name, sizeof(name), "to_out.0");
				snprintf(proc, cap - (size_t)(proc - module), ".%s", name);
			}
		}
		return 1;
	}
	return 0;
}

static clunet_status tensor_f32(const char *file, const st_tensor *t, float **out)
{
	float *v;
	if (!cu_dtype_is_float(t->dtype) && t->dtype != CLUNET_F64)
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor '%s' is not a float tensor", file, t->name);
	v = cu_malloc((t->numel ? t->numel : 1) * 4);
	if (!v)
		return CLUNET_ERR_HOST_MEMORY;
	cu_convert_to_f32(v, t->data, t->dtype, t->numel);
	for (size_t i = 0; i < t->numel; i++) {
		if (!isfinite(v[i])) {
			free(v);
			return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor '%s' has a value that is not "
				       "finite", file, t->name);
		}
	}
	*out = v;
	return CLUNET_OK;
}

/* Checks a down/up pair against its layer and builds the nn_lora_layer. */
static clunet_status make_layer(const char *file, const pending *p, nn_lora_layer *out)
{
	const layer_ref *L = p->layer;
	const st_tensor *d = p->t[PART_DOWN], *u = p->t[PART_UP], *a = p->t[PART_ALPHA];
	char sd[96], su[96];
	int rank;
	clunet_status st;
	memset(out, 0, sizeof(*out));
	if (!d || !u)
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: layer '%s' has a LoRA %s weight but no %s "
			       "weight", file, L->prefix, d ? "down" : "up", d ? "up" : "down");
	rank = d->ndim >= 1 ? (int)d->shape[0] : 0;
	snprintf(sd, sizeof(sd), "[%d, %d] or [%d, %d, %d, %d]", rank, L->in, rank, L->in, L->kh,
		 L->kw);
	if (rank < 1 || !((d->ndim == 2 && d->shape[1] == L->in && L->kh == 1 && L->kw == 1) ||
			  (d->ndim == 4 && d->shape[1] == L->in && d->shape[2] == L->kh &&
			   d->shape[3] == L->kw)))
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor '%s' should be %s for layer '%s' "
			       "(%d inputs, %dx%d kernel)", file, d->name, sd, L->prefix, L->in, L->kh,
			       L->kw);
	snprintf(su, sizeof(su), "[%d, %d] or [%d, %d, 1, 1]", L->out, rank, L->out, rank);
	if (!((u->ndim == 2 && u->shape[0] == L->out && u->shape[1] == rank) ||
	      (u->ndim == 4 && u->shape[0] == L->out && u->shape[1] == rank && u->shape[2] == 1 &&
	       u->shape[3] == 1)))
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor '%s' should be %s for layer '%s'", file,
			       u->name, su, L->prefix);
	if (a && a->numel != 1)
		return cu_fail(CLUNET_ERR_WEIGHTS, "%s: tensor '%s' should hold one value (the alpha)",
			       file, a->name);
	out->prefix = cu_strdup(L->prefix);
	if (!out->prefix)
		return CLUNET_ERR_HOST_MEMORY;
	out->rank = rank;
	out->in = L->in;
	out->out = L->out;
	out->kh = L->kh;
	out->kw = L->kw;
	out->factor = 1.0f;
	if ((st = tensor_f32(file, d, &out->down)) != CLUNET_OK ||
	    (st = tensor_f32(file, u, &out->up)) != CLUNET_OK)
		return st;
	if (a) {
		float *v;
		if ((st = tensor_f32(file, a, &v)) != CLUNET_OK)
			return st;
		out->factor = v[0] / (float)rank;
		free(v);
	}
	return CLUNET_OK;
}

static void free_layers(nn_lora_layer *l, int n)
{
	if (!l)
		return;
	for (int i = 0; i < n; i++) {
		free(l[i].prefix);
		free(l[i].down);
		free(l[i].up);
	}
	free(l);
}

/* conv_in and the embeddings run before diffusers applies the LoRA scale
 * (scale_lora_layers with PEFT; without PEFT they are called without it). */
static int pre_scale_layer(const char *prefix)
{
	static const char *const pre[] = { "conv_in", "time_embedding.", "class_embedding",
					   "add_embedding.", "encoder_hid_proj" };
	for (size_t i = 0; i < CU_ARRAY_LEN(pre); i++)
		if (!strncmp(prefix, pre[i], strlen(pre[i])))
			return 1;
	return 0;
}

void clunet_lora_options_init(clunet_lora_options *o)
{
	memset(o, 0, sizeof(*o));
	o->scale = 1.0f;
}

static clunet_status need_lora_model(clunet_model_t *m, const char *what)
{
	if (!m)
		return cu_fail(CLUNET_ERR_ARGUMENT, "%s: model is NULL", what);
	if (!m->vt->lora)
		return cu_fail(CLUNET_ERR_UNSUPPORTED, "%s: diffusers loads no LoRA into a %s", what,
			       m->vt->class_name);
	return CLUNET_OK;
}

clunet_status clunet_model_load_lora(clunet_model_t *m, const char *path,
				     const clunet_lora_options *opt)
{
	clunet_lora_options def;
	layer_list layers = { 0 };
	pending *pend = NULL;
	nn_lora_layer *out = NULL;
	int np = 0, n_out = 0, peft = 0, any_alpha = 0, first_b_rank = 0;
	st_file *f = NULL;
	clunet_status st = need_lora_model(m, "clunet_model_load_lora");
	if (st)
		return st;
	if (!path)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_load_lora: path is NULL");
	if (!opt) {
		clunet_lora_options_init(&def);
		opt = &def;
	}
	if (!isfinite(opt->scale))
		return cu_fail(CLUNET_ERR_ARGUMENT, "LoRA %s: the scale is not finite", path);
	st = st_open(path, &f);
	if (st)
		return st;
	nn_store_layers(m->store, add_layer, &layers);
	pend = cu_calloc(f->n ? f->n : 1, sizeof(pending));
	if (layers.oom || !pend) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto done;
	}
	for (size_t i = 0; i < f->n && !st; i++) {
		const st_tensor *t = &f->tensors[i];
		const char *k = t->name;
		char module[512];
		const layer_ref *L = NULL;
		part pt;
		int found = -1;
		for (int again = 1; again;) {
			again = 0;
			if (starts_with(k, "unet.")) {
				k += 5;
				again = 1;
			} else if (starts_with(k, "base_model.model.")) {
				k += 17;
				again = 1;
			}
		}
		if (starts_with(k, "text_encoder") || starts_with(k, "lora_te"))
			continue; /* for the text encoders, not the UNet */
		if (starts_with(k, "lora_unet_")) { /* kohya */
			size_t stem;
			k += 10;
			if (ends_with(k, ".lora_down.weight", &stem))
				pt = PART_DOWN;
			else if (ends_with(k, ".lora_up.weight", &stem))
				pt = PART_UP;
			else if (ends_with(k, ".alpha", &stem))
				pt = PART_ALPHA;
			else {
				st = cu_fail(CLUNET_ERR_WEIGHTS, "%s: key '%s' is not a kohya LoRA tensor "
					     "(.lora_down.weight, .lora_up.weight, .alpha)", path, t->name);
				break;
			}
			if (stem >= sizeof(module)) {
				st = cu_fail(CLUNET_ERR_WEIGHTS, "%s: key '%s' is too long", path, t->name);
				break;
			}
			memcpy(module, k, stem);
			module[stem] = 0;
			L = find_layer(&layers, module, 1);
			if (!L && (starts_with(module, "input_blocks_") ||
				   starts_with(module, "middle_block_") ||
				   starts_with(module, "output_blocks_"))) {
				st = cu_fail(CLUNET_ERR_UNSUPPORTED, "%s: key '%s' uses the original "
					     "Stable Diffusion (SGM) block names, which clunet does not "
					     "map to diffusers' layers yet", path, t->name);
				break;
			}
		} else {
			if (!split_key(k, module, sizeof(module), &pt)) {
				st = cu_fail(CLUNET_ERR_WEIGHTS, "%s: key '%s' is not a LoRA tensor in "
					     "the diffusers, PEFT or kohya form", path, t->name);
				break;
			}
			L = find_layer(&layers, module, 0);
		}
		if (!L) {
			st = cu_fail(CLUNET_ERR_WEIGHTS, "%s: key '%s' is for layer '%s', which this %s "
				     "does not have (a LoRA for another model?)", path, t->name, module,
				     m->vt->class_name);
			break;
		}
		for (int j = 0; j < np; j++)
			if (pend[j].layer == L)
				found = j;
		if (found < 0) {
			found = np++;
			pend[found].layer = L;
		}
		if (pt == PART_ALPHA)
			any_alpha = 1;
		if (strstr(t->name, ".lora_B.") || strstr(t->name, ".lora_A.")) {
			peft = 1;
			if (!first_b_rank && strstr(t->name, ".lora_B.") && t->ndim >= 2)
				first_b_rank = (int)t->shape[1];
		}
		if (pend[found].t[pt]) {
			st = cu_fail(CLUNET_ERR_WEIGHTS, "%s: keys '%s' and '%s' are the same tensor of "
				     "layer '%s'", path, pend[found].t[pt]->name, t->name, L->prefix);
			break;
		}
		pend[found].t[pt] = t;
	}
	if (!st && np == 0)
		st = cu_fail(CLUNET_ERR_WEIGHTS, "%s: no UNet LoRA tensors in the file (%zu tensors, "
			     "none for the UNet)", path, f->n);
	if (!st) {
		out = cu_calloc((size_t)np, sizeof(nn_lora_layer));
		if (!out)
			st = CLUNET_ERR_HOST_MEMORY;
	}
	for (int j = 0; j < np && !st; j++) {
		st = make_layer(path, &pend[j], &out[j]);
		n_out = j + 1;
		/* layers diffusers runs before it applies the scale */
		out[j].unscaled = !st && pre_scale_layer(out[j].prefix);
	}
	if (!st && peft && !any_alpha) {
		/* diffusers 0.26.3 (get_peft_kwargs) takes the rank of the first lora_B
		 * tensor as lora_alpha for every layer */
		for (int j = 0; j < np; j++)
			out[j].factor = (float)first_b_rank / (float)out[j].rank;
	}
	if (!st) {
		model_drop_plans(m);
		st = nn_store_lora_set(m->store, out, np, opt->scale);
		out = NULL; /* the store owns them now (and frees them on failure) */
		n_out = 0;
		if (!st && opt->fuse)
			st = nn_store_lora_fuse(m->store, opt->scale);
	}
done:
	free_layers(out, n_out);
	free(pend);
	free(layers.v);
	st_close(f);
	return st;
}

clunet_status clunet_model_set_lora_scale(clunet_model_t *m, float scale)
{
	clunet_status st = need_lora_model(m, "clunet_model_set_lora_scale");
	if (st)
		return st;
	if (!isfinite(scale))
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_set_lora_scale: the scale is not finite");
	if (nn_store_lora_mode(m->store) != NN_LORA_UNFUSED)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_set_lora_scale: no unfused LoRA is "
			       "loaded%s", nn_store_lora_mode(m->store) == NN_LORA_FUSED
					   ? " (it is fused: unfuse it first)" : "");
	return nn_store_lora_scale(m->store, scale);
}

clunet_status clunet_model_fuse_lora(clunet_model_t *m, float scale)
{
	clunet_status st = need_lora_model(m, "clunet_model_fuse_lora");
	if (st)
		return st;
	if (!isfinite(scale))
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_fuse_lora: the scale is not finite");
	if (nn_store_lora_mode(m->store) != NN_LORA_UNFUSED)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_fuse_lora: %s",
			       nn_store_lora_mode(m->store) == NN_LORA_FUSED ? "the LoRA is fused already"
									     : "no LoRA is loaded");
	model_drop_plans(m);
	return nn_store_lora_fuse(m->store, scale);
}

clunet_status clunet_model_unfuse_lora(clunet_model_t *m)
{
	clunet_status st = need_lora_model(m, "clunet_model_unfuse_lora");
	if (st)
		return st;
	if (nn_store_lora_mode(m->store) != NN_LORA_FUSED)
		return cu_fail(CLUNET_ERR_ARGUMENT, "clunet_model_unfuse_lora: no fused LoRA");
	model_drop_plans(m);
	return nn_store_lora_unfuse(m->store);
}

clunet_status clunet_model_unload_lora(clunet_model_t *m)
{
	clunet_status st = need_lora_model(m, "clunet_model_unload_lora");
	if (st)
		return st;
	if (nn_store_lora_mode(m->store) == NN_LORA_NONE)
		return CLUNET_OK;
	model_drop_plans(m);
	nn_store_lora_clear(m->store);
	return CLUNET_OK;
}
