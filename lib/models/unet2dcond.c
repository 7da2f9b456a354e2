/* UNet2DConditionModel (diffusers models/unets/unet_2d_condition.py,
 * v0.26.3): Stable Diffusion 1.x/2.x/XL, LCM, DeepFloyd IF, the K-upscaler
 * layout, with ControlNet and T2I-Adapter residuals. All activations are
 * channel-major; the encoder states are turned channel-major on input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAX_LEVELS 8
#define MAX_LAYERS 16

typedef enum {
	DB_DOWN, DB_CROSS, DB_SIMPLE, DB_RESNET, DB_K, DB_KCROSS,
} down_type;
typedef enum {
	UB_UP, UB_CROSS, UB_SIMPLE, UB_RESNET, UB_ATTN, UB_K, UB_KCROSS,
} up_type;
typedef enum { MB_CROSS, MB_SIMPLE, MB_PLAIN, MB_NONE } mid_type;
typedef enum { CE_NONE, CE_EMBEDDING, CE_TIMESTEP, CE_IDENTITY, CE_PROJECTION, CE_SIMPLE } class_type;
typedef enum { AE_NONE, AE_TEXT, AE_TEXT_TIME } add_type;
typedef enum { CN_NONE, CN_LAYER, CN_GROUP } cross_norm;

typedef struct cond_config {
	int in_ch, out_ch, center, flip;
	float shift;
	int n;
	down_type down[MAX_LEVELS];
	up_type up[MAX_LEVELS];
	mid_type mid;
	int boc[MAX_LEVELS];
	int layers[MAX_LEVELS];                      /* down blocks' resnets */
	int tl_down[MAX_LEVELS][MAX_LAYERS];         /* transformer depth per down layer */
	int tl_up[MAX_LEVELS][MAX_LAYERS + 1];       /* per up block (up order), per layer */
	int tl_mid;
	int only_cross[MAX_LEVELS];                  /* down order */
	int mid_only_cross;
	int cross_dim[MAX_LEVELS];                   /* down order */
	int head_param[MAX_LEVELS];                  /* attention_head_dim[i]; 0 when null */
	int ds_pad;
	float mid_scale;
	cu_act act;
	int groups;                                  /* 0: norm_num_groups null */
	float eps;
	int linear_proj, upcast, dual;
	int encoder_hid_dim;                         /* > 0: text_proj */
	class_type cls;
	int num_class_embeds, proj_class_dim, class_concat;
	add_type add;
	int add_time_dim, add_heads;
	int scale_shift, skip_time_act;
	float res_out_scale;
	int fourier;
	int temb_dim, temb_in;                       /* time_embed_dim, timestep_input_dim */
	int has_time_act, has_post_act;
	cu_act time_act, post_act;
	int cond_proj_dim;
	int conv_in_k, conv_out_k;
	cross_norm xnorm;
	int sample_h, sample_w;
	int ctx_dim;                                 /* width encoder_hidden_states must have */
} cond_config;

/* ------------------------------------------------------------ config */

static const char *const down_names[] = { "DownBlock2D", "CrossAttnDownBlock2D",
					  "SimpleCrossAttnDownBlock2D", "ResnetDownsampleBlock2D",
					  "KDownBlock2D", "KCrossAttnDownBlock2D", NULL };
static const char *const up_names[] = { "UpBlock2D", "CrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
					"ResnetUpsampleBlock2D", "AttnUpBlock2D", "KUpBlock2D",
					"KCrossAttnUpBlock2D", NULL };

static int is_json_int(const cJSON *j, long *v)
{
	if (!cJSON_IsNumber(j) || floor(j->valuedouble) != j->valuedouble || fabs(j->valuedouble) > 1e9)
		return 0;
	*v = (long)j->valuedouble;
	return 1;
}

static clunet_status parse_blocks(const cfg *c, const char *key, const char *const *names, int *out,
				  int *n)
{
	const char *list[MAX_LEVELS];
	clunet_status st = cfg_str_list(c, key, list, MAX_LEVELS, n);
	if (st)
		return st;
	for (int i = 0; i < *n; i++) {
		int found = -1;
		const char *name = list[i];
		if (!strncmp(name, "UNetRes", 7))
			name += 7;
		for (int k = 0; names[k]; k++)
			if (!strcmp(name, names[k]))
				found = k;
		if (found < 0) {
			if (!strcmp(name, "AttnDownBlock2D"))
				return cfg_error(c, key, "entry %d: AttnDownBlock2D cannot run in a "
						 "UNet2DConditionModel (its forward() does not take the "
						 "`scale` argument the model passes)", i);
			return cfg_error(c, key, "entry %d: \"%s\" is not a UNet2DConditionModel block", i,
					 list[i]);
		}
		out[i] = found;
	}
	return CLUNET_OK;
}

/* An int, or a list of n ints (or nulls where null_ok). */
static clunet_status int_per_block(const cfg *c, const char *key, int n, long def, int null_ok,
				   int *out)
{
	const cJSON *j = cfg_get(c, key), *e;
	long v;
	int k = 0;
	if (!j || (cJSON_IsNull(j) && null_ok)) {
		for (int i = 0; i < n; i++)
			out[i] = j ? 0 : (int)def;
		return CLUNET_OK;
	}
	if (is_json_int(j, &v)) {
		for (int i = 0; i < n; i++)
			out[i] = (int)v;
		return CLUNET_OK;
	}
	if (!cJSON_IsArray(j))
		return cfg_error(c, key, "expected an integer or a list of %d integers", n);
	cJSON_ArrayForEach(e, j) {
		if (k >= n)
			return cfg_error(c, key, "has more than %d entries (one per block)", n);
		if (cJSON_IsNull(e) && null_ok)
			out[k++] = 0;
		else if (is_json_int(e, &v))
			out[k++] = (int)v;
		else
			return cfg_error(c, key, "entry %d: expected an integer", k);
	}
	if (k != n)
		return cfg_error(c, key, "has %d entries but there are %d blocks", k, n);
	return CLUNET_OK;
}

/* transformer_layers_per_block: an int, a list per block, or a list of lists
 * per block and layer (asymmetric UNets); fills per-layer depths. */
static clunet_status parse_depths(const cfg *c, const char *key, const cJSON *j, int n,
				  const int *layers, int (*out)[MAX_LAYERS + 1], int *any_list)
{
	const cJSON *e, *f;
	long v;
	int k = 0;
	*any_list = 0;
	if (!j || is_json_int(j, &v)) {
		if (!j)
			v = 1;
		for (int i = 0; i < n; i++)
			for (int l = 0; l < layers[i]; l++)
				out[i][l] = (int)v;
		return CLUNET_OK;
	}
	if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != n)
		return cfg_error(c, key, "expected an integer or a list of %d entries", n);
	cJSON_ArrayForEach(e, j) {
		if (is_json_int(e, &v)) {
			for (int l = 0; l < layers[k]; l++)
				out[k][l] = (int)v;
		} else if (cJSON_IsArray(e)) {
			int l = 0;
			*any_list = 1;
			cJSON_ArrayForEach(f, e) {
				if (!is_json_int(f, &v) || l >= MAX_LAYERS + 1)
					return cfg_error(c, key, "entry %d: expected integers", k);
				out[k][l++] = (int)v;
			}
			if (l < layers[k])
				return cfg_error(c, key, "entry %d has %d depths for %d layers", k, l,
						 layers[k]);
		} else {
			return cfg_error(c, key, "entry %d: expected an integer or a list", k);
		}
		k++;
	}
	return CLUNET_OK;
}

static clunet_status parse_act(const cfg *c, const char *key, const char *def, int *has,
			       cu_act *act)
{
	const char *s;
	clunet_status st = cfg_str(c, key, def, &s);
	if (st)
		return st;
	*has = s != NULL;
	if (s && !nn_parse_act(s, act))
		return cfg_error(c, key, "\"%s\" is not an activation diffusers knows (silu, swish, "
				 "mish, gelu, relu)", s);
	return CLUNET_OK;
}

static clunet_status parse_config(model *m, const cfg *c)
{
	static const char *const temb_names[] = { "positional", "fourier", NULL };
	static const char *const shift_names[] = { "default", "scale_shift", NULL };
	cond_config *u = cu_calloc(1, sizeof(cond_config));
	long v, boc[MAX_LEVELS];
	int n, nup, is_null, idx, any_list, has;
	double d;
	const char *s;
	const cJSON *j;
	clunet_status st;

	if (!u)
		return CLUNET_ERR_HOST_MEMORY;
	m->config = u;
#define TRY(x) do { if ((st = (x)) != CLUNET_OK) return st; } while (0)
	TRY(cfg_int(c, "in_channels", 4, &v));
	if (v <= 0 || v > 65536)
		return cfg_error(c, "in_channels", "must be a positive channel count");
	u->in_ch = (int)v;
	TRY(cfg_int(c, "out_channels", 4, &v));
	if (v <= 0 || v > 65536)
		return cfg_error(c, "out_channels", "must be a positive channel count");
	u->out_ch = (int)v;
	TRY(cfg_bool(c, "center_input_sample", 0, &u->center));
	TRY(cfg_bool(c, "flip_sin_to_cos", 1, &u->flip));
	TRY(cfg_num(c, "freq_shift", 0, &d));
	u->shift = (float)d;

	if (cfg_get(c, "down_block_types")) {
		TRY(parse_blocks(c, "down_block_types", down_names, (int *)u->down, &u->n));
	} else {
		static const down_type def[] = { DB_CROSS, DB_CROSS, DB_CROSS, DB_DOWN };
		memcpy(u->down, def, sizeof(def));
		u->n = 4;
	}
	if (cfg_get(c, "up_block_types")) {
		TRY(parse_blocks(c, "up_block_types", up_names, (int *)u->up, &nup));
	} else {
		static const up_type def[] = { UB_UP, UB_CROSS, UB_CROSS, UB_CROSS };
		memcpy(u->up, def, sizeof(def));
		nup = 4;
	}
	if (u->n == 0)
		return cfg_error(c, "down_block_types", "needs at least one block");
	if (nup != u->n)
		return cfg_error(c, "up_block_types", "has %d blocks but down_block_types has %d "
				 "(diffusers requires the same number)", nup, u->n);
	n = u->n;
	if (cfg_get(c, "block_out_channels")) {
		int nb;
		TRY(cfg_int_list(c, "block_out_channels", boc, MAX_LEVELS, &nb, 0));
		if (nb != n)
			return cfg_error(c, "block_out_channels", "has %d entries but there are %d down "
					 "blocks", nb, n);
	} else {
		static const long def[] = { 320, 640, 1280, 1280 };
		if (n != 4)
			return cfg_error(c, "block_out_channels", "missing, and the default has 4 entries");
		memcpy(boc, def, sizeof(def));
	}
	for (int i = 0; i < n; i++) {
		if (boc[i] <= 0 || boc[i] > 65536)
			return cfg_error(c, "block_out_channels", "entry %d must be a positive channel "
					 "count", i);
		u->boc[i] = (int)boc[i];
	}
	TRY(cfg_str(c, "mid_block_type", "UNetMidBlock2DCrossAttn", &s));
	j = cfg_get(c, "mid_block_type");
	if (j && cJSON_IsNull(j))
		u->mid = MB_NONE;
	else if (!strcmp(s, "UNetMidBlock2DCrossAttn"))
		u->mid = MB_CROSS;
	else if (!strcmp(s, "UNetMidBlock2DSimpleCrossAttn"))
		u->mid = MB_SIMPLE;
	else if (!strcmp(s, "UNetMidBlock2D"))
		u->mid = MB_PLAIN;
	else
		return cfg_error(c, "mid_block_type", "\"%s\" is not a mid block diffusers knows", s);

	TRY(int_per_block(c, "layers_per_block", n, 2, 0, u->layers));
	for (int i = 0; i < n; i++)
		if (u->layers[i] < 1 || u->layers[i] > MAX_LAYERS - 1)
			return cfg_error(c, "layers_per_block", "entry %d must be between 1 and %d", i,
					 MAX_LAYERS - 1);
	{
		int tl[MAX_LEVELS][MAX_LAYERS + 1];
		const cJSON *rev = cfg_get(c, "reverse_transformer_layers_per_block");
		memset(tl, 0, sizeof(tl));
		TRY(parse_depths(c, "transformer_layers_per_block", cfg_get(c, "transformer_layers_per_block"),
				 n, u->layers, tl, &any_list));
		for (int i = 0; i < n; i++)
			for (int l = 0; l < u->layers[i]; l++)
				u->tl_down[i][l] = tl[i][l];
		u->tl_mid = tl[n - 1][0];
		if (any_list && (!rev || cJSON_IsNull(rev)))
			return cfg_error(c, "transformer_layers_per_block", "a list of lists needs "
					 "reverse_transformer_layers_per_block (diffusers raises here)");
		if (rev && !cJSON_IsNull(rev)) {
			int up_layers[MAX_LEVELS];
			for (int i = 0; i < n; i++)
				up_layers[i] = u->layers[n - 1 - i] + 1;
			TRY(parse_depths(c, "reverse_transformer_layers_per_block", rev, n, up_layers,
					 u->tl_up, &has));
		} else { /* reversed(transformer_layers_per_block)[i], repeated per layer */
			for (int i = 0; i < n; i++)
				for (int l = 0; l < u->layers[n - 1 - i] + 1; l++)
					u->tl_up[i][l] = tl[n - 1 - i][0];
		}
	}
	j = cfg_get(c, "only_cross_attention");
	if (!j || cJSON_IsBool(j)) {
		int oc = j && cJSON_IsTrue(j);
		for (int i = 0; i < n; i++)
			u->only_cross[i] = oc;
		u->mid_only_cross = oc;
	} else {
		const cJSON *e;
		int k = 0;
		if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != n)
			return cfg_error(c, "only_cross_attention", "expected true/false or a list of %d", n);
		cJSON_ArrayForEach(e, j) {
			if (!cJSON_IsBool(e))
				return cfg_error(c, "only_cross_attention", "entry %d: expected true or false", k);
			u->only_cross[k++] = cJSON_IsTrue(e);
		}
		u->mid_only_cross = 0;
	}
	j = cfg_get(c, "mid_block_only_cross_attention");
	if (j && !cJSON_IsNull(j)) {
		if (!cJSON_IsBool(j))
			return cfg_error(c, "mid_block_only_cross_attention", "expected true, false or null");
		u->mid_only_cross = cJSON_IsTrue(j);
	}
	TRY(int_per_block(c, "cross_attention_dim", n, 1280, 0, u->cross_dim));
	if (!cfg_is_null(c, "num_attention_heads"))
		return cfg_error(c, "num_attention_heads", "must be null in diffusers 0.26.3 (the head "
				 "count is read from attention_head_dim)");
	TRY(int_per_block(c, "attention_head_dim", n, 8, 1, u->head_param));
	TRY(cfg_int(c, "downsample_padding", 1, &v));
	if (v < 0 || v > 1)
		return cfg_error(c, "downsample_padding", "only 0 and 1 keep the skip sizes");
	u->ds_pad = (int)v;
	TRY(cfg_num(c, "mid_block_scale_factor", 1, &d));
	if (d == 0)
		return cfg_error(c, "mid_block_scale_factor", "must not be 0");
	u->mid_scale = (float)d;
	TRY(cfg_num(c, "dropout", 0, &d));
	TRY(parse_act(c, "act_fn", "silu", &has, &u->act));
	if (!has)
		return cfg_error(c, "act_fn", "must be an activation, not null");
	TRY(cfg_int_or_null(c, "norm_num_groups", 32, 0, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "norm_num_groups", "must be a positive integer or null");
	u->groups = is_null ? 0 : (int)v;
	TRY(cfg_num(c, "norm_eps", 1e-5, &d));
	u->eps = (float)d;
	TRY(cfg_bool(c, "use_linear_projection", 0, &u->linear_proj));
	if (cfg_is_null(c, "upcast_attention")) /* SDXL's config: None, which diffusers treats as False */
		u->upcast = 0;
	else
		TRY(cfg_bool(c, "upcast_attention", 0, &u->upcast));
	TRY(cfg_bool(c, "dual_cross_attention", 0, &u->dual));
	TRY(cfg_enum(c, "resnet_time_scale_shift", shift_names, 0, &u->scale_shift));
	TRY(cfg_bool(c, "resnet_skip_time_act", 0, &u->skip_time_act));
	TRY(cfg_num(c, "resnet_out_scale_factor", 1.0, &d));
	u->res_out_scale = (float)d;
	TRY(cfg_int(c, "conv_in_kernel", 3, &v));
	if (v < 1 || v > 15 || v % 2 == 0)
		return cfg_error(c, "conv_in_kernel", "must be an odd kernel size");
	u->conv_in_k = (int)v;
	TRY(cfg_int(c, "conv_out_kernel", 3, &v));
	if (v < 1 || v > 15 || v % 2 == 0)
		return cfg_error(c, "conv_out_kernel", "must be an odd kernel size");
	u->conv_out_k = (int)v;

	/* time */
	TRY(cfg_enum(c, "time_embedding_type", temb_names, 0, &idx));
	u->fourier = idx == 1;
	TRY(cfg_int_or_null(c, "time_embedding_dim", 0, 1, &v, &is_null));
	if (!is_null && v <= 0)
		return cfg_error(c, "time_embedding_dim", "must be a positive integer or null");
	if (u->fourier) {
		u->temb_dim = is_null ? 2 * u->boc[0] : (int)v;
		if (u->temb_dim % 2)
			return cfg_error(c, "time_embedding_dim", "must be even for the Fourier embedding");
		u->temb_in = u->temb_dim;
	} else {
		u->temb_dim = is_null ? 4 * u->boc[0] : (int)v;
		u->temb_in = u->boc[0];
	}
	TRY(parse_act(c, "time_embedding_act_fn", NULL, &u->has_time_act, &u->time_act));
	TRY(parse_act(c, "timestep_post_act", NULL, &u->has_post_act, &u->post_act));
	TRY(cfg_int_or_null(c, "time_cond_proj_dim", 0, 1, &v, &is_null));
	u->cond_proj_dim = is_null ? 0 : (int)v;
	if (u->cond_proj_dim < 0)
		return cfg_error(c, "time_cond_proj_dim", "must be positive or null");

	/* encoder states projection */
	TRY(cfg_int_or_null(c, "encoder_hid_dim", 0, 1, &v, &is_null));
	u->encoder_hid_dim = is_null ? 0 : (int)v;
	TRY(cfg_str(c, "encoder_hid_dim_type", NULL, &s));
	if (s && strcmp(s, "text_proj"))
		return cu_fail(CLUNET_ERR_UNSUPPORTED, "%s: key 'encoder_hid_dim_type': \"%s\" "
			       "(Kandinsky / IP-Adapter projections) is not supported by clunet yet",
			       c->path, s);
	if (s && !u->encoder_hid_dim)
		return cfg_error(c, "encoder_hid_dim", "must be set when encoder_hid_dim_type is");
	if (u->encoder_hid_dim) {
		for (int i = 1; i < n; i++)
			if (u->cross_dim[i] != u->cross_dim[0])
				return cfg_error(c, "cross_attention_dim", "a per-block list cannot take the "
						 "text_proj of encoder_hid_dim (diffusers raises here)");
	}

	/* class and additional embeddings */
	TRY(cfg_int_or_null(c, "num_class_embeds", 0, 1, &v, &is_null));
	u->num_class_embeds = is_null ? 0 : (int)v;
	TRY(cfg_int_or_null(c, "projection_class_embeddings_input_dim", 0, 1, &v, &is_null));
	u->proj_class_dim = is_null ? 0 : (int)v;
	TRY(cfg_str(c, "class_embed_type", NULL, &s));
	if (!s)
		u->cls = u->num_class_embeds > 0 ? CE_EMBEDDING : CE_NONE;
	else if (!strcmp(s, "timestep"))
		u->cls = CE_TIMESTEP;
	else if (!strcmp(s, "identity"))
		u->cls = CE_IDENTITY;
	else if (!strcmp(s, "projection"))
		u->cls = CE_PROJECTION;
	else if (!strcmp(s, "simple_projection"))
		u->cls = CE_SIMPLE;
	else
		u->cls = CE_NONE; /* diffusers builds no class embedding for other values */
	if ((u->cls == CE_PROJECTION || u->cls == CE_SIMPLE) && u->proj_class_dim <= 0)
		return cfg_error(c, "projection_class_embeddings_input_dim", "must be set for "
				 "class_embed_type \"%s\"", s);
	TRY(cfg_bool(c, "class_embeddings_concat", 0, &u->class_concat));
	TRY(cfg_str(c, "addition_embed_type", NULL, &s));
	if (!s)
		u->add = AE_NONE;
	else if (!strcmp(s, "text"))
		u->add = AE_TEXT;
	else if (!strcmp(s, "text_time"))
		u->add = AE_TEXT_TIME;
	else if (!strcmp(s, "text_image") || !strcmp(s, "image") || !strcmp(s, "image_hint"))
		return cu_fail(CLUNET_ERR_UNSUPPORTED, "%s: key 'addition_embed_type': \"%s\" (Kandinsky) "
			       "is not supported by clunet yet", c->path, s);
	else
		return cfg_error(c, "addition_embed_type", "\"%s\" is not one of \"text\", "
				 "\"text_time\", ... (diffusers raises here)", s);
	TRY(cfg_int_or_null(c, "addition_time_embed_dim", 0, 1, &v, &is_null));
	u->add_time_dim = is_null ? 0 : (int)v;
	if (u->add == AE_TEXT_TIME && (u->add_time_dim <= 0 || u->proj_class_dim <= 0))
		return cfg_error(c, "addition_time_embed_dim", "and projection_class_embeddings_input_dim "
				 "must be set for addition_embed_type \"text_time\"");
	TRY(cfg_int(c, "addition_embed_type_num_heads", 64, &v));
	u->add_heads = (int)v;
	if (u->add == AE_TEXT) {
		int from = u->encoder_hid_dim ? u->encoder_hid_dim : u->cross_dim[0];
		if (u->add_heads <= 0 || from % u->add_heads)
			return cfg_error(c, "addition_embed_type_num_heads", "%d heads do not divide the "
					 "text width %d", u->add_heads, from);
	}
	TRY(cfg_str(c, "attention_type", "default", &s));
	if (strcmp(s, "default"))
		return cu_fail(CLUNET_ERR_UNSUPPORTED, "%s: key 'attention_type': \"%s\" (GLIGEN) is not "
			       "supported by clunet yet", c->path, s);
	TRY(cfg_str(c, "cross_attention_norm", NULL, &s));
	u->xnorm = !s ? CN_NONE : !strcmp(s, "layer_norm") ? CN_LAYER
			: !strcmp(s, "group_norm") ? CN_GROUP : CN_NONE;
	if (s && u->xnorm == CN_NONE)
		return cfg_error(c, "cross_attention_norm", "\"%s\" is not null, \"layer_norm\" or "
				 "\"group_norm\"", s);
	{
		long ss[2];
		int ns;
		j = cfg_get(c, "sample_size");
		if (j && !cJSON_IsNull(j)) {
			TRY(cfg_int_list(c, "sample_size", ss, 2, &ns, 2));
			u->sample_h = (int)ss[0];
			u->sample_w = (int)ss[ns > 1];
		}
	}

	/* one encoder_hidden_states feeds every block that cross-attends */
	{
		int want = 0, first = -1, kv = u->encoder_hid_dim ? u->cross_dim[0] : 0;
		for (int i = 0; i <= n; i++) {
			int uses = i < n ? (u->down[i] == DB_CROSS || u->down[i] == DB_SIMPLE ||
					    u->down[i] == DB_KCROSS || u->up[n - 1 - i] == UB_CROSS ||
					    u->up[n - 1 - i] == UB_SIMPLE || u->up[n - 1 - i] == UB_KCROSS)
					 : (u->mid == MB_CROSS || u->mid == MB_SIMPLE);
			int dim = u->cross_dim[i < n ? i : n - 1];
			if (!uses)
				continue;
			if (!want) {
				want = dim;
				first = i;
			} else if (dim != want) {
				return cfg_error(c, "cross_attention_dim", "entry %d (%d) differs from entry %d "
						 "(%d), but one encoder_hidden_states feeds both blocks' "
						 "cross-attention (diffusers fails in forward)", i < n ? i : n - 1,
						 dim, first, want);
			}
		}
		if (kv && want && kv != want)
			return cfg_error(c, "cross_attention_dim", "encoder_hid_proj projects to %d but the "
					 "blocks cross-attend with width %d", kv, want);
		u->ctx_dim = u->encoder_hid_dim ? u->encoder_hid_dim : want ? want : u->cross_dim[0];
	}

	/* what this version of clunet does not build yet */
	for (int i = 0; i < n && !u->groups; i++)
		if (u->down[i] != DB_K && u->down[i] != DB_KCROSS)
			return cfg_error(c, "norm_num_groups", "null only works with the K blocks (down "
					 "block %d would build GroupNorm(None))", i);
#undef TRY
	return CLUNET_OK;
}

/* ------------------------------------------------------------ inputs */

enum { S_SAMPLE, S_TIME, S_ENC }; /* the first slots; the rest are named in the builder */

static int expect(const clunet_tensor *t, int cond, const char *what)
{
	char s[96];
	if (!cond)
		cu_fail(CLUNET_ERR_INPUT, "input '%s': expected %s, got %s %s", t->name, what,
			cu_dtype_name(t->dtype), model_tensor_shape(t, s, sizeof(s)));
	return cond;
}

/* Names of the optional inputs, their slots and meaning. */
typedef struct cond_inputs {
	int cls, tcond, mask, emask, text_embeds, time_ids;
	int n_ctrl, ctrl[3 * MAX_LEVELS * MAX_LAYERS], ctrl_mid;
	int n_adapter, adapter[MAX_LEVELS + 1];
} cond_inputs;

static int numbered(const clunet_tensor *in, size_t n, const char *base, int *count)
{
	char name[128];
	*count = 0;
	for (int k = 0;; k++) {
		snprintf(name, sizeof(name), "%s.%d", base, k);
		if (!model_find_input(in, n, name))
			break;
		(*count)++;
	}
	return *count > 0;
}

static clunet_status float_slot(model_inputs *mi, const clunet_tensor *t, int ndim,
				const int64_t *want, const char *what)
{
	if (!expect(t, cu_dtype_is_float(t->dtype) && t->ndim == ndim &&
			       !memcmp(t->shape, want, (size_t)ndim * sizeof(int64_t)), what))
		return CLUNET_ERR_INPUT;
	return model_slot_f32(mi, t);
}

/* A mask (B, L) of 1 = keep, as diffusers' additive bias (1 - m) * -10000. */
static clunet_status mask_slot(model_inputs *mi, const clunet_tensor *t, int64_t batch)
{
	char what[96];
	float *bias;
	size_t n;
	clunet_status st;
	snprintf(what, sizeof(what), "a [%lld, keys] mask", (long long)batch);
	if (!expect(t, t->ndim == 2 && t->shape[0] == batch && t->shape[1] > 0, what))
		return CLUNET_ERR_INPUT;
	n = (size_t)(t->shape[0] * t->shape[1]);
	bias = cu_malloc(n * 4);
	if (!bias)
		return CLUNET_ERR_HOST_MEMORY;
	cu_convert_to_f32(bias, t->data, t->dtype, n);
	for (size_t i = 0; i < n; i++)
		bias[i] = (1.0f - bias[i]) * -10000.0f;
	st = model_slot_values(mi, CU_F32, 2, t->shape, bias);
	free(bias);
	return st;
}

static clunet_status prepare_inputs(model *m, const clunet_tensor *in, size_t n, model_inputs *mi)
{
	const cond_config *u = m->config;
	const clunet_tensor *sample = model_find_input(in, n, "sample");
	const clunet_tensor *ts = model_find_input(in, n, "timestep");
	const clunet_tensor *enc = model_find_input(in, n, "encoder_hidden_states");
	const clunet_tensor *t;
	int64_t batch, k, ctx_dim = u->ctx_dim;
	char what[160];
	double tv[4096];
	float tf[4096];
	clunet_status st;
	size_t used = 0;

	if (!sample)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'sample' [N, %d, H, W]", u->in_ch);
	if (!ts)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'timestep'");
	if (!enc)
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'encoder_hidden_states' [N, tokens, %lld]",
			       (long long)ctx_dim);
	snprintf(what, sizeof(what), "a float tensor [N, %d, H, W]", u->in_ch);
	if (!expect(sample, cu_dtype_is_float(sample->dtype) && sample->ndim == 4 &&
				    sample->shape[1] == u->in_ch && sample->shape[0] > 0 &&
				    sample->shape[2] > 0 && sample->shape[3] > 0, what))
		return CLUNET_ERR_INPUT;
	batch = sample->shape[0];
	if (batch > 4096)
		return cu_fail(CLUNET_ERR_INPUT, "input 'sample': batch larger than 4096");
	st = model_slot_f32(mi, sample);
	if (st)
		return st;
	model_slot_name(mi, "sample");
	/* timesteps: expand(B) of one value or one per item; a Python float
	 * stays a float here (float64), an int an integer */
	k = ts->ndim == 0 ? 1 : ts->shape[0];
	snprintf(what, sizeof(what), "a scalar or a 1-D tensor of 1 or %lld values", (long long)batch);
	if (!expect(ts, ts->ndim <= 1 && (k == 1 || k == batch), what))
		return CLUNET_ERR_INPUT;
	cu_convert_to_f64(tv, ts->data, ts->dtype, (size_t)k);
	for (int64_t i = 0; i < batch; i++) {
		tf[i] = (float)tv[k == 1 ? 0 : i];
		if (!isfinite(tf[i]))
			return cu_fail(CLUNET_ERR_INPUT, "input 'timestep': value %lld is not finite",
				       (long long)i);
	}
	st = model_slot_values(mi, CU_F32, 1, &batch, tf);
	if (st)
		return st;
	model_slot_name(mi, "timestep");
	used += 2;
	/* encoder_hidden_states (B, L, D) -> channel-major (B, D, L) */
	snprintf(what, sizeof(what), "a float tensor [%lld, tokens, %lld]", (long long)batch,
		 (long long)ctx_dim);
	if (!expect(enc, cu_dtype_is_float(enc->dtype) && enc->ndim == 3 && enc->shape[0] == batch &&
				 enc->shape[1] > 0 && enc->shape[2] == ctx_dim, what))
		return CLUNET_ERR_INPUT;
	{
		int64_t L = enc->shape[1], D = enc->shape[2], cm[3] = { batch, D, L };
		size_t total = (size_t)(batch * L * D);
		float *src = cu_malloc(total * 4), *dst = cu_malloc(total * 4);
		if (!src || !dst) {
			free(src);
			free(dst);
			return CLUNET_ERR_HOST_MEMORY;
		}
		cu_convert_to_f32(src, enc->data, enc->dtype, total);
		for (int64_t b = 0; b < batch; b++)
			for (int64_t l = 0; l < L; l++)
				for (int64_t dd = 0; dd < D; dd++)
					dst[(b * D + dd) * L + l] = src[(b * L + l) * D + dd];
		st = 0;
		for (size_t i = 0; i < total && !st; i++)
			if (!isfinite(dst[i]))
				st = cu_fail(CLUNET_ERR_INPUT, "input 'encoder_hidden_states': a value is "
					     "not finite");
		if (!st)
			st = model_slot_values(mi, CU_F32, 3, cm, dst);
		free(src);
		free(dst);
		if (st)
			return st;
		model_slot_name(mi, "encoder_hidden_states");
		used++;
	}
	if (u->dual) { /* DualTransformer2DModel: tokens [0, 77) and [77, 334) */
		int64_t L = enc->shape[1], D = enc->shape[2];
		if (L <= 77)
			return cu_fail(CLUNET_ERR_INPUT, "input 'encoder_hidden_states': dual cross-attention "
				       "splits the states into 77 and 257 tokens; %lld tokens leave the "
				       "second part empty", (long long)L);
		if (model_find_input(in, n, "attention_mask") ||
		    model_find_input(in, n, "encoder_attention_mask"))
			return cu_fail(CLUNET_ERR_INPUT, "inputs 'attention_mask' / "
				       "'encoder_attention_mask': the dual transformer blocks take no masks");
		for (int part = 0; part < 2; part++) {
			int64_t t0 = part ? 77 : 0, t1 = part ? (L < 334 ? L : 334) : 77, len = t1 - t0;
			int64_t cm[3] = { batch, D, len };
			float *src = cu_malloc((size_t)(batch * L * D) * 4), *dst;
			dst = cu_malloc((size_t)(batch * len * D) * 4);
			if (!src || !dst) {
				free(src);
				free(dst);
				return CLUNET_ERR_HOST_MEMORY;
			}
			cu_convert_to_f32(src, enc->data, enc->dtype, (size_t)(batch * L * D));
			for (int64_t b = 0; b < batch; b++)
				for (int64_t l = 0; l < len; l++)
					for (int64_t dd = 0; dd < D; dd++)
						dst[(b * D + dd) * len + l] = src[(b * L + t0 + l) * D + dd];
			st = model_slot_values(mi, CU_F32, 3, cm, dst);
			free(src);
			free(dst);
			if (st)
				return st;
			model_slot_name(mi, part ? "encoder_hidden_states.dual1" : "encoder_hidden_states.dual0");
		}
	}
	/* the optional inputs, in a fixed slot order that the signature records */
	if ((t = model_find_input(in, n, "class_labels")) != NULL) {
		if (u->cls == CE_NONE)
			return cu_fail(CLUNET_ERR_INPUT, "input 'class_labels': this model has no class "
				       "embedding");
		used++;
		if (u->cls == CE_EMBEDDING) {
			int32_t idx[4096];
			double v[4096];
			int64_t kk = t->ndim == 0 ? 1 : t->shape[0];
			if (!expect(t, !cu_dtype_is_float(t->dtype) && t->ndim <= 1 &&
					       (kk == 1 || kk == batch), "integer class labels, 1 or N"))
				return CLUNET_ERR_INPUT;
			cu_convert_to_f64(v, t->data, t->dtype, (size_t)kk);
			for (int64_t i = 0; i < batch; i++) {
				double x = v[kk == 1 ? 0 : i];
				if (x < 0 || x >= u->num_class_embeds)
					return cu_fail(CLUNET_ERR_INPUT, "input 'class_labels': label %.0f is "
						       "outside [0, %d)", x, u->num_class_embeds);
				idx[i] = (int32_t)x;
			}
			st = model_slot_values(mi, CU_I32, 1, &batch, idx);
		} else if (u->cls == CE_TIMESTEP) {
			double v[4096];
			float f[4096];
			int64_t kk = t->ndim == 0 ? 1 : t->shape[0];
			if (!expect(t, t->ndim <= 1 && (kk == 1 || kk == batch), "1 or N class labels"))
				return CLUNET_ERR_INPUT;
			cu_convert_to_f64(v, t->data, t->dtype, (size_t)kk);
			for (int64_t i = 0; i < batch; i++)
				f[i] = (float)v[kk == 1 ? 0 : i];
			st = model_slot_values(mi, CU_F32, 1, &batch, f);
		} else {
			int64_t w = u->cls == CE_IDENTITY ? u->temb_dim : u->proj_class_dim;
			int64_t want[2] = { batch, w };
			snprintf(what, sizeof(what), "a float tensor [%lld, %lld]", (long long)batch,
				 (long long)w);
			st = float_slot(mi, t, 2, want, what);
		}
		if (st)
			return st;
		model_slot_name(mi, "class_labels");
	} else if (u->cls != CE_NONE) {
		return cu_fail(CLUNET_ERR_INPUT, "missing input 'class_labels': the model has a class "
			       "embedding");
	}
	if ((t = model_find_input(in, n, "timestep_cond")) != NULL) {
		int64_t want[2] = { batch, u->cond_proj_dim };
		if (!u->cond_proj_dim)
			return cu_fail(CLUNET_ERR_INPUT, "input 'timestep_cond': the model has no "
				       "time_cond_proj_dim (diffusers would fail)");
		snprintf(what, sizeof(what), "a float tensor [%lld, %d]", (long long)batch,
			 u->cond_proj_dim);
		if ((st = float_slot(mi, t, 2, want, what)) != CLUNET_OK)
			return st;
		model_slot_name(mi, "timestep_cond");
		used++;
	}
	if ((t = model_find_input(in, n, "attention_mask")) != NULL) {
		if ((st = mask_slot(mi, t, batch)) != CLUNET_OK)
			return st;
		model_slot_name(mi, "attention_mask");
		used++;
	}
	if ((t = model_find_input(in, n, "encoder_attention_mask")) != NULL) {
		int64_t want = enc->shape[1];
		if (t->ndim == 2 && t->shape[1] != want)
			return cu_fail(CLUNET_ERR_INPUT, "input 'encoder_attention_mask': %lld values per "
				       "item for %lld encoder tokens", (long long)t->shape[1],
				       (long long)want);
		if ((st = mask_slot(mi, t, batch)) != CLUNET_OK)
			return st;
		model_slot_name(mi, "encoder_attention_mask");
		used++;
	}
	if (u->add == AE_TEXT_TIME) {
		const clunet_tensor *te = model_find_input(in, n, "added_cond_kwargs.text_embeds");
		const clunet_tensor *ti = model_find_input(in, n, "added_cond_kwargs.time_ids");
		if (!te || !ti)
			return cu_fail(CLUNET_ERR_INPUT, "missing input 'added_cond_kwargs.%s': "
				       "addition_embed_type \"text_time\" needs text_embeds and time_ids",
				       te ? "time_ids" : "text_embeds");
		if (!expect(te, cu_dtype_is_float(te->dtype) && te->ndim == 2 && te->shape[0] == batch,
			    "a float tensor [N, width]") ||
		    !expect(ti, ti->ndim == 2 && ti->shape[0] == batch, "[N, time ids]"))
			return CLUNET_ERR_INPUT;
		if (te->shape[1] + ti->shape[1] * u->add_time_dim != u->proj_class_dim)
			return cu_fail(CLUNET_ERR_INPUT, "inputs 'added_cond_kwargs.text_embeds' (%lld) and "
				       "'time_ids' (%lld x %d) do not make the %d features of "
				       "projection_class_embeddings_input_dim", (long long)te->shape[1],
				       (long long)ti->shape[1], u->add_time_dim, u->proj_class_dim);
		if ((st = model_slot_f32(mi, te)) != CLUNET_OK)
			return st;
		model_slot_name(mi, "text_embeds");
		{ /* flattened, as add_time_proj sees them */
			int64_t nt = batch * ti->shape[1];
			float *f = cu_malloc((size_t)nt * 4);
			if (!f)
				return CLUNET_ERR_HOST_MEMORY;
			cu_convert_to_f32(f, ti->data, ti->dtype, (size_t)nt);
			st = model_slot_values(mi, CU_F32, 1, &nt, f);
			free(f);
			if (st)
				return st;
			model_slot_name(mi, "time_ids");
		}
		used += 2;
	}
	{ /* ControlNet / T2I-Adapter residuals: shapes are checked while building */
		int nc = 0, na = 0;
		numbered(in, n, "down_block_additional_residuals", &nc);
		numbered(in, n, "down_intrablock_additional_residuals", &na);
		for (int pass = 0; pass < 2; pass++) {
			const char *base = pass ? "down_intrablock_additional_residuals"
						: "down_block_additional_residuals";
			for (int i = 0; i < (pass ? na : nc); i++) {
				char name[128];
				snprintf(name, sizeof(name), "%s.%d", base, i);
				t = model_find_input(in, n, name);
				if (!expect(t, cu_dtype_is_float(t->dtype) && t->ndim == 4 &&
						       t->shape[0] == batch, "a float tensor [N, C, H, W]"))
					return CLUNET_ERR_INPUT;
				if ((st = model_slot_f32(mi, t)) != CLUNET_OK)
					return st;
				model_slot_name(mi, name);
				used++;
			}
		}
		if ((t = model_find_input(in, n, "mid_block_additional_residual")) != NULL) {
			if (!nc)
				return cu_fail(CLUNET_ERR_INPUT, "input 'mid_block_additional_residual' needs "
					       "the down_block_additional_residuals.* too (ControlNet)");
			if (!expect(t, cu_dtype_is_float(t->dtype) && t->ndim == 4 && t->shape[0] == batch,
				    "a float tensor [N, C, H, W]"))
				return CLUNET_ERR_INPUT;
			if ((st = model_slot_f32(mi, t)) != CLUNET_OK)
				return st;
			model_slot_name(mi, "mid_block_additional_residual");
			used++;
		}
	}
	if (used != n) { /* a name nobody took */
		static const char *const known[] = {
			"sample", "timestep", "encoder_hidden_states", "class_labels", "timestep_cond",
			"attention_mask", "encoder_attention_mask", "added_cond_kwargs.text_embeds",
			"added_cond_kwargs.time_ids", "mid_block_additional_residual", NULL };
		for (size_t i = 0; i < n; i++) {
			int ok = 0;
			for (int k2 = 0; known[k2] && !ok; k2++)
				ok = !strcmp(in[i].name, known[k2]);
			ok |= !strncmp(in[i].name, "down_block_additional_residuals.", 32) ||
			      !strncmp(in[i].name, "down_intrablock_additional_residuals.", 37);
			if (!ok || ((!strcmp(in[i].name, "added_cond_kwargs.text_embeds") ||
				     !strcmp(in[i].name, "added_cond_kwargs.time_ids")) &&
				    u->add != AE_TEXT_TIME))
				return cu_fail(CLUNET_ERR_INPUT, "unexpected input '%s' for this "
					       "UNet2DConditionModel", in[i].name);
		}
		return cu_fail(CLUNET_ERR_INPUT, "the numbered residual inputs must count from .0 "
			       "without gaps");
	}
	return CLUNET_OK;
}

/* ------------------------------------------------------------ graph */

#define P(buf, ...) snprintf(buf, sizeof(buf), __VA_ARGS__)
#define MAX_SKIPS (MAX_LEVELS * (MAX_LAYERS + 1) + 1)

typedef struct builder {
	nn_ctx *c;
	const cond_config *u;
	const model *m;
	const model_inputs *mi;
	int stack[MAX_SKIPS];
	int depth;
	int temb_ch;          /* width of emb the resnets see */
	int enc;              /* encoder states, channel-major [N, D, L] */
	int dual[2];          /* dual cross-attention: tokens [0, 77) and [77, 334) */
	int mask, emask;      /* additive biases [N, keys] or -1 */
	int adapter[MAX_SKIPS];
	const char *adapter_name[MAX_SKIPS];
	int n_adapter, next_adapter;
} builder;

static int fail(builder *b, clunet_status st)
{
	return cu_graph_fail(b->c->g, st);
}

static void push(builder *b, int t)
{
	if (b->c->g->status)
		return;
	if (b->depth < MAX_SKIPS)
		b->stack[b->depth++] = t;
	else
		fail(b, cu_fail(CLUNET_ERR_CONFIG, "internal: too many skip connections"));
}

static int pop(builder *b)
{
	if (b->c->g->status)
		return -1;
	if (b->depth == 0)
		return fail(b, cu_fail(CLUNET_ERR_CONFIG, "internal: skip stack empty"));
	return b->stack[--b->depth];
}

/* The graph input of a named slot, or -1 when the caller did not give it. */
static int input(builder *b, const char *name)
{
	int s = model_slot_find(b->mi, name);
	const model_slot *sl;
	if (s < 0)
		return -1;
	sl = &b->mi->slot[s];
	return cu_graph_input(b->c->g, s, sl->dtype, sl->ndim, sl->ne);
}

static const char *shape_str(const cu_tensor *t, char *buf, size_t cap)
{
	size_t k = 0;
	k += (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < t->ndim && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
	if (k < cap)
		snprintf(buf + k, cap - k, "]");
	return buf;
}

/* h + r where the caller's residual r must have h's shape exactly. */
static int add_residual(builder *b, int h, int r, const char *name)
{
	cu_graph *g = b->c->g;
	const cu_tensor *th, *tr;
	char s1[96], s2[96];
	if (g->status || h < 0 || r < 0)
		return -1;
	th = cu_t(g, h);
	tr = cu_t(g, r);
	if (th->ndim != tr->ndim || memcmp(th->ne, tr->ne, sizeof(int64_t) * (size_t)th->ndim))
		return fail(b, cu_fail(CLUNET_ERR_INPUT, "input '%s': shape %s does not match the "
				       "feature map %s it is added to", name, shape_str(tr, s1, sizeof(s1)),
				       shape_str(th, s2, sizeof(s2))));
	return op_add(g, h, r);
}

static int time_proj(builder *b, int t)
{
	const cond_config *u = b->u;
	nn_ctx *c = b->c;
	if (u->fourier) {
		int64_t half = u->temb_dim / 2;
		return op_fourier_embed(c->g, t, nn_weight(c, NN_W_FOURIER, 1, &half,
							   "time_proj.weight"), 0, u->flip);
	}
	return op_timestep_embed(c->g, t, u->boc[0], u->flip, u->shift);
}

/* TimestepEmbedding: [x + cond_proj(cond)] -> linear_1 -> act -> linear_2 -> [post_act] */
static int timestep_embedding(builder *b, const char *pre, int x, int in, cu_act act, int cond,
			      int cond_dim, int post, cu_act post_act)
{
	nn_ctx *c = b->c;
	char p[128];
	int dim = b->u->temb_dim;
	if (cond >= 0) {
		conv_args a;
		conv_args_init(&a, 0);
		a.res = x;
		P(p, "%s.cond_proj", pre);
		x = nn_linear_ex(c, p, cond, cond_dim, in, 0, &a);
	}
	P(p, "%s.linear_1", pre);
	x = nn_linear(c, p, x, in, dim, 1, act);
	P(p, "%s.linear_2", pre);
	return nn_linear(c, p, x, dim, dim, 1, post ? post_act : CU_ACT_NONE);
}

static int layer_norm(builder *b, const char *pre, int x, int64_t ch)
{
	nn_ctx *c = b->c;
	return op_layer_norm(c->g, x, nn_weight(c, NN_W_NORM_SCALE, 1, &ch, "%s.weight", pre),
			     nn_weight(c, NN_W_NORM_SHIFT, 1, &ch, "%s.bias", pre), 1e-5f);
}

/* TextTimeEmbedding on the raw encoder states x [N, D, L]: LayerNorm,
 * AttentionPooling (one query: the mean token + a positional embedding),
 * proj, LayerNorm. */
static int text_time_embedding(builder *b, int x)
{
	nn_ctx *c = b->c;
	cu_graph *g = c->g;
	const cu_tensor *t;
	int64_t n, D, L, pos_ne[2];
	int heads = b->u->add_heads, d, cls, pos, q, k, v, kv, a;
	if (g->status)
		return -1;
	t = cu_t(g, x);
	n = t->ne[0];
	D = t->ne[1];
	L = t->ne[2];
	d = (int)D / heads;
	x = layer_norm(b, "add_embedding.norm1", x, D);
	pos_ne[0] = 1;
	pos_ne[1] = D;
	pos = nn_weight(c, NN_W_EMBED, 2, pos_ne, "add_embedding.pool.positional_embedding");
	/* [1, D] -> [N, D]: repeat along a length, then transpose */
	pos = op_transpose(g, op_repeat_len(g, pos, (int)n), 1, (int)D, (int)n);
	pos = cu_reshape(g, pos, 2, (int64_t[]){ n, D });
	cls = op_add(g, op_mean_last(g, x), pos);
	kv = op_concat_last(g, cu_reshape(g, cls, 3, (int64_t[]){ n, D, 1 }), x);
	q = nn_linear(c, "add_embedding.pool.q_proj", cls, (int)D, (int)D, 1, CU_ACT_NONE);
	k = nn_linear(c, "add_embedding.pool.k_proj", kv, (int)D, (int)D, 1, CU_ACT_NONE);
	v = nn_linear(c, "add_embedding.pool.v_proj", kv, (int)D, (int)D, 1, CU_ACT_NONE);
	a = nn_attention_core(c, q, k, v, -1, (int)n, heads, d, 1, (int)L + 1, 2,
			      (int64_t[]){ n, D });
	a = nn_linear(c, "add_embedding.proj", a, (int)D, b->u->temb_dim, 1, CU_ACT_NONE);
	return layer_norm(b, "add_embedding.norm2", a, b->u->temb_dim);
}

/* emb = time_embedding(time_proj(t)) [+ class] [+ aug], then time_embed_act */
static int embeddings(builder *b, int enc_raw)
{
	const cond_config *u = b->u;
	nn_ctx *c = b->c;
	cu_graph *g = c->g;
	int t = input(b, "timestep"), cls = input(b, "class_labels"), cond = input(b, "timestep_cond");
	int emb, ce = -1;

	emb = timestep_embedding(b, "time_embedding", time_proj(b, t), u->temb_in, u->act, cond,
				 u->cond_proj_dim, u->has_post_act, u->post_act);
	switch (u->cls) {
	case CE_EMBEDDING: {
		int64_t shape[2] = { u->num_class_embeds, u->temb_dim };
		ce = op_embed(g, cls, nn_weight(c, NN_W_EMBED, 2, shape, "class_embedding.weight"));
		break;
	}
	case CE_TIMESTEP:
		ce = timestep_embedding(b, "class_embedding", time_proj(b, cls), u->temb_in, u->act, -1,
					0, 0, CU_ACT_NONE);
		break;
	case CE_IDENTITY:
		ce = cls;
		break;
	case CE_PROJECTION:
		ce = timestep_embedding(b, "class_embedding", cls, u->proj_class_dim, CU_ACT_SILU, -1,
					0, 0, CU_ACT_NONE);
		break;
	case CE_SIMPLE:
		ce = nn_linear(c, "class_embedding", cls, u->proj_class_dim, u->temb_dim, 1,
			       CU_ACT_NONE);
		break;
	default:
		break;
	}
	if (ce >= 0)
		emb = u->class_concat ? op_concat(g, emb, ce) : op_add(g, emb, ce);
	if (u->add == AE_TEXT) {
		emb = op_add(g, emb, text_time_embedding(b, enc_raw));
	} else if (u->add == AE_TEXT_TIME) {
		int te = input(b, "text_embeds"), ti = input(b, "time_ids"), tt;
		int64_t nb, nt;
		if (g->status)
			return -1;
		nb = cu_t(g, te)->ne[0];
		nt = cu_t(g, ti)->ne[0];
		tt = op_timestep_embed(g, ti, u->add_time_dim, u->flip, u->shift);
		tt = cu_reshape(g, tt, 2, (int64_t[]){ nb, nt / nb * u->add_time_dim });
		emb = op_add(g, emb, timestep_embedding(b, "add_embedding", op_concat(g, te, tt),
							u->proj_class_dim, CU_ACT_SILU, -1, 0, 0,
							CU_ACT_NONE));
	}
	if (u->has_time_act)
		emb = op_act(g, emb, u->time_act);
	return emb;
}

static int resnet(builder *b, const char *pre, int x, int in, int out, float scale, nn_resample rs,
		  int skip_time_act)
{
	nn_resnet2d_cfg r;
	nn_resnet2d_cfg_init(&r, in, out, b->u->groups, b->u->eps, b->u->act, b->u->scale_shift,
			     b->temb_ch);
	r.output_scale = scale;
	r.resample = rs;
	r.skip_time_act = skip_time_act;
	return nn_resnet2d(b->c, pre, x, &r);
}

/* The encoder states for a block that cross-attends with width `dim`. */
static int context(builder *b, const char *pre, int dim)
{
	const cu_tensor *t;
	if (b->c->g->status)
		return -1;
	t = cu_t(b->c->g, b->enc);
	if (t->ne[1] != dim)
		return fail(b, cu_fail(CLUNET_ERR_INPUT, "input 'encoder_hidden_states': %s "
				       "cross-attends with width %d, but the states are %lld wide",
				       pre, dim, (long long)t->ne[1]));
	return b->enc;
}

/* DualTransformer2DModel: transformers[1] on the first 77 tokens,
 * transformers[0] on the next 257, mixed half and half:
 * 0.5 (T1 - x) + 0.5 (T0 - x) + x = (T1 + T0) / 2. */
static int dual_transformer(builder *b, const char *pre, int h, const nn_transformer_cfg *t)
{
	char p[160];
	int out[2];
	nn_transformer_cfg one = *t;
	one.layers = 1;
	one.linear_proj = 0;
	one.only_cross = 0;
	for (int i = 0; i < 2; i++) {
		P(p, "%s.transformers.%d", pre, 1 - i);
		if (!b->c->g->status && cu_t(b->c->g, b->dual[i])->ne[1] != t->cross_dim)
			return fail(b, cu_fail(CLUNET_ERR_INPUT, "input 'encoder_hidden_states': %s "
					       "cross-attends with width %d, but the states are %lld "
					       "wide", pre, t->cross_dim,
					       (long long)cu_t(b->c->g, b->dual[i])->ne[1]));
		out[i] = nn_transformer2d(b->c, p, h, b->dual[i], -1, -1, &one);
	}
	return op_affine(b->c->g, op_add(b->c->g, out[0], out[1]), 0.5f, 0.0f);
}

/* Transformer2DModel of a CrossAttn block or the mid block. */
static int transformer(builder *b, const char *pre, int h, int ch, int heads, int layers,
		       int cross_dim, int only_cross)
{
	nn_transformer_cfg t;
	if (heads <= 0)
		return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: attention_head_dim (the head count of "
				       "the transformer blocks) is null for this block", pre));
	if (ch / heads < 1)
		return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: %d heads for %d channels", pre, heads,
				       ch));
	memset(&t, 0, sizeof(t));
	t.channels = ch;
	t.heads = heads;
	t.dim_head = ch / heads;
	t.layers = layers;
	t.groups = b->u->groups;
	t.linear_proj = b->u->linear_proj;
	t.only_cross = only_cross;
	t.cross_dim = cross_dim;
	if (b->u->dual)
		return dual_transformer(b, pre, h, &t);
	return nn_transformer2d(b->c, pre, h, context(b, pre, cross_dim), b->mask, b->emask, &t);
}

/* A mask for keys = the encoder tokens then the HW pixels: diffusers'
 * prepare_attention_mask pads a mask that is not `hw` long with hw zeros. */
static int simple_mask(builder *b, const char *pre, int mask, int hw, int keys)
{
	nn_ctx *c = b->c;
	const cu_tensor *t;
	int64_t n, len;
	if (mask < 0 || c->g->status)
		return mask;
	t = cu_t(c->g, mask);
	n = t->ne[0];
	len = t->ne[1];
	if (len != hw) {
		char key[64];
		int64_t zne[2] = { n, hw };
		float *z = cu_calloc((size_t)(n * hw), sizeof(float));
		int zt;
		if (!z)
			return fail(b, CLUNET_ERR_HOST_MEMORY);
		P(key, "zeros.%lldx%d", (long long)n, hw);
		zt = nn_const(c, key, 2, zne, z);
		free(z);
		mask = op_concat_last(c->g, mask, zt);
		len += hw;
	}
	if (len != keys)
		return fail(b, cu_fail(CLUNET_ERR_INPUT, "%s: the attention mask has %lld values per "
				       "item, the attention %d keys (diffusers fails here too)", pre,
				       (long long)len, keys));
	return mask;
}

/* Attention with AttnAddedKVProcessor (SimpleCrossAttn blocks): keys and
 * values from add_k_proj/add_v_proj of the encoder states, then (unless
 * only_cross) from to_k/to_v of the pixels; + residual. */
static int simple_attention(builder *b, const char *pre, int x, int ch, int head_dim,
			    int cross_dim, int only_cross)
{
	const cond_config *u = b->u;
	nn_ctx *c = b->c;
	cu_graph *g = c->g;
	char p[300];
	int heads, inner, h, enc, q, k, v, mask, lk;
	int64_t n, hh, ww, L;
	if (g->status)
		return -1;
	if (head_dim <= 0)
		head_dim = ch;
	heads = ch / head_dim;
	if (heads < 1)
		return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: attention_head_dim %d is larger than the "
				       "%d channels", pre, head_dim, ch));
	inner = heads * head_dim;
	n = cu_t(g, x)->ne[0];
	hh = cu_t(g, x)->ne[2];
	ww = cu_t(g, x)->ne[3];
	enc = context(b, pre, cross_dim);
	if (g->status)
		return -1;
	L = cu_t(g, enc)->ne[2];
	P(p, "%s.group_norm", pre);
	h = nn_group_norm(c, p, x, u->groups, 1e-5f, 1, -1, CU_ACT_NONE);
	P(p, "%s.norm_cross", pre);
	if (u->xnorm == CN_LAYER) {
		if (cross_dim != ch)
			return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: cross_attention_norm "
					       "\"layer_norm\" is built %d wide but the encoder states "
					       "are %d wide (diffusers fails here too)", pre, ch,
					       cross_dim));
		enc = layer_norm(b, p, enc, cross_dim);
	} else if (u->xnorm == CN_GROUP) {
		enc = nn_group_norm(c, p, enc, 32, 1e-5f, 1, -1, CU_ACT_NONE);
	}
	P(p, "%s.to_q", pre);
	q = nn_linear(c, p, h, ch, inner, 1, CU_ACT_NONE);
	P(p, "%s.add_k_proj", pre);
	k = nn_linear(c, p, enc, cross_dim, inner, 1, CU_ACT_NONE);
	P(p, "%s.add_v_proj", pre);
	v = nn_linear(c, p, enc, cross_dim, inner, 1, CU_ACT_NONE);
	lk = (int)L;
	if (!only_cross) {
		int64_t ne[3] = { n, inner, hh * ww };
		int ks, vs;
		P(p, "%s.to_k", pre);
		ks = cu_reshape(g, nn_linear(c, p, h, ch, inner, 1, CU_ACT_NONE), 3, ne);
		P(p, "%s.to_v", pre);
		vs = cu_reshape(g, nn_linear(c, p, h, ch, inner, 1, CU_ACT_NONE), 3, ne);
		k = op_concat_last(g, k, ks);
		v = op_concat_last(g, v, vs);
		lk += (int)(hh * ww);
	}
	mask = simple_mask(b, pre, b->mask >= 0 ? b->mask : b->emask, (int)(hh * ww), lk);
	h = nn_attention_core(c, q, k, v, mask, (int)n, heads, head_dim, (int)(hh * ww), lk, 4,
			      (int64_t[]){ n, inner, hh, ww });
	{
		conv_args a;
		conv_args_init(&a, 0);
		a.res = x;
		P(p, "%s.to_out.0", pre);
		return nn_linear_ex(c, p, h, inner, ch, 1, &a);
	}
}

/* The next T2I-Adapter residual, or -1 when none is left. */
static int next_adapter(builder *b, const char **name)
{
	if (b->next_adapter >= b->n_adapter)
		return -1;
	*name = b->adapter_name[b->next_adapter];
	return b->adapter[b->next_adapter++];
}

/* ---- the K-upscaler blocks ---- */

#define K_GROUP 32

/* AdaGroupNorm: GroupNorm without affine, * (1 + scale) + shift from
 * linear(emb), then act. */
static int ada_group_norm(builder *b, const char *pre, int x, int ch, int groups, float eps,
			  cu_act act)
{
	char p[160];
	int ss;
	if (groups < 1 || ch % groups)
		return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: AdaGroupNorm with %d groups over %d "
				       "channels (the K blocks need multiples of 32 channels; "
				       "torch refuses this too)", pre, groups, ch));
	P(p, "%s.linear", pre);
	ss = nn_linear(b->c, p, b->c->temb, b->temb_ch, 2 * ch, 1, CU_ACT_NONE);
	return op_group_norm(b->c->g, x, -1, -1, groups, eps, ss, act);
}

/* ResnetBlockCondNorm2D(ada_group), conv_shortcut without bias. */
static int k_resnet(builder *b, const char *pre, int x, int in, int out, int conv_out,
		    int groups_out)
{
	const cond_config *u = b->u;
	char p[160];
	int h, sc = x;
	conv_args a;
	P(p, "%s.norm1", pre);
	h = ada_group_norm(b, p, x, in, in / K_GROUP, u->eps, u->act);
	conv_args_init(&a, 1);
	P(p, "%s.conv1", pre);
	h = nn_conv2d(b->c, p, h, in, out, 3, 1, &a);
	P(p, "%s.norm2", pre);
	h = ada_group_norm(b, p, h, out, groups_out, u->eps, u->act);
	if (in != conv_out) {
		conv_args_init(&a, 0);
		P(p, "%s.conv_shortcut", pre);
		sc = nn_conv2d(b->c, p, x, in, conv_out, 1, 0, &a);
	}
	conv_args_init(&a, 1);
	a.res = sc;
	P(p, "%s.conv2", pre);
	return nn_conv2d(b->c, p, h, out, conv_out, 3, 1, &a);
}

/* KAttentionBlock: [AdaGN -> self-attention + x], AdaGN -> cross-attention
 * (LayerNorm on the encoder states) + x; no feed-forward. */
static int k_attention(builder *b, const char *pre, int x, int dim, int head_dim, int cross_dim,
		       int self_attn)
{
	char p[160];
	int groups = dim / K_GROUP > 1 ? dim / K_GROUP : 1, h, enc;
	nn_attn_cfg a;
	memset(&a, 0, sizeof(a));
	a.channels = dim;
	a.dim_head = head_dim;
	a.heads = dim / head_dim;
	if (a.heads < 1)
		return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: attention_head_dim %d is larger than the "
				       "%d channels", pre, head_dim, dim));
	if (self_attn) {
		P(p, "%s.norm1", pre);
		h = ada_group_norm(b, p, x, dim, groups, 1e-5f, CU_ACT_NONE);
		P(p, "%s.attn1", pre);
		x = nn_attention(b->c, p, h, -1, b->mask, x, &a);
	}
	P(p, "%s.norm2", pre);
	h = ada_group_norm(b, p, x, dim, groups, 1e-5f, CU_ACT_NONE);
	enc = context(b, pre, cross_dim);
	P(p, "%s.attn2.norm_cross", pre);
	enc = layer_norm(b, p, enc, cross_dim);
	a.ctx_dim = cross_dim;
	P(p, "%s.attn2", pre);
	return nn_attention(b->c, p, h, enc, b->emask, x, &a);
}

/* KDownsample2D / KUpsample2D: the (1, 3, 3, 1) / 8 kernel with reflect
 * padding, separable, so two passes of the 1-D resampler. */
static int k_resample(builder *b, int x, int up)
{
	static const float kd[4] = { 0.125f, 0.375f, 0.375f, 0.125f };
	static const float ku[4] = { 0.25f, 0.75f, 0.75f, 0.25f };
	cu_graph *g = b->c->g;
	int64_t n, ch, hh, ww, four = 4, oh, ow;
	int k;
	if (g->status)
		return -1;
	n = cu_t(g, x)->ne[0];
	ch = cu_t(g, x)->ne[1];
	hh = cu_t(g, x)->ne[2];
	ww = cu_t(g, x)->ne[3];
	if (hh < 2 || ww < 2)
		return fail(b, cu_fail(CLUNET_ERR_INPUT, "input 'sample': a %lldx%lld map is too small "
				       "for the K blocks' reflect padding", (long long)hh,
				       (long long)ww));
	k = nn_const(b->c, up ? "k_upsample_taps" : "k_downsample_taps", 1, &four, up ? ku : kd);
	/* along W */
	x = op_resample1d(g, cu_reshape(g, x, 3, (int64_t[]){ n * ch, hh, ww }), k, up);
	if (g->status)
		return -1;
	ow = cu_t(g, x)->ne[2];
	/* along H: transpose, resample, transpose back */
	x = op_transpose(g, x, (int)(n * ch), (int)hh, (int)ow);
	x = op_resample1d(g, x, k, up);
	if (g->status)
		return -1;
	oh = cu_t(g, x)->ne[2];
	x = op_transpose(g, x, (int)(n * ch), (int)ow, (int)oh);
	return cu_reshape(g, x, 4, (int64_t[]){ n, ch, oh, ow });
}

#define NONE_SKIP (-2) /* KCrossAttnDownBlock2D without a downsampler pushes None */

static int k_down_block(builder *b, int i, int h, int in)
{
	const cond_config *u = b->u;
	int out = u->boc[i], last = i == u->n - 1, cross = u->down[i] == DB_KCROSS;
	char pre[64], p[128];
	P(pre, "down_blocks.%d", i);
	for (int j = 0; j < u->layers[i]; j++) {
		P(p, "%s.resnets.%d", pre, j);
		h = k_resnet(b, p, h, j ? out : in, out, out, out / K_GROUP);
		if (cross) {
			P(p, "%s.attentions.%d", pre, j);
			h = k_attention(b, p, h, out, u->head_param[i] ? u->head_param[i] : out,
					u->cross_dim[i], last);
		}
		push(b, cross && last ? NONE_SKIP : h);
	}
	if (!last)
		h = k_resample(b, h, 0);
	return h;
}

static int k_up_block(builder *b, int i, int h)
{
	const cond_config *u = b->u;
	int n = u->n, r = n - 1 - i, out = u->boc[r];
	int in = u->boc[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
	int layers = u->layers[r], cross = u->up[i] == UB_KCROSS, s = -1;
	int first = in == out && out == b->temb_ch, middle = in != out;
	int head = u->head_param[i] ? u->head_param[i] : out;
	char pre[64], p[128];
	cu_graph *g = b->c->g;

	P(pre, "up_blocks.%d", i);
	/* the block takes len(resnets) skips and uses only the last */
	for (int j = 0; j < layers; j++) {
		int t = pop(b);
		if (j == 0)
			s = t;
	}
	if (g->status)
		return -1;
	if (s != NONE_SKIP)
		h = op_concat(g, h, s);
	for (int j = 0; j < layers; j++) {
		int rin = j ? out : (cross && first ? out : 2 * out);
		int lastj = j == layers - 1;
		int conv_out = cross ? (middle && lastj ? in : out) : (lastj ? in : out);
		int rout = cross ? out : conv_out;
		P(p, "%s.resnets.%d", pre, j);
		h = k_resnet(b, p, h, rin, rout, conv_out, out / K_GROUP);
		if (cross) {
			P(p, "%s.attentions.%d", pre, j);
			h = k_attention(b, p, h, lastj ? in : out, head, u->cross_dim[r], first);
		}
	}
	if (i < n - 1)
		h = k_resample(b, h, 1);
	return h;
}

static int down_block(builder *b, int i, int h, int in)
{
	const cond_config *u = b->u;
	down_type t = u->down[i];
	int out = u->boc[i], last = i == u->n - 1, simple = t == DB_SIMPLE || t == DB_RESNET;
	int adapter = -1;
	float scale = simple ? u->res_out_scale : 1.0f;
	const char *aname = NULL;
	char pre[64], p[128];

	if (t == DB_K || t == DB_KCROSS) {
		if (t == DB_KCROSS && b->next_adapter < b->n_adapter)
			return fail(b, cu_fail(CLUNET_ERR_INPUT, "input '%s': a T2I-Adapter residual "
					       "cannot go into down_blocks.%d, a KCrossAttnDownBlock2D "
					       "(diffusers fails here too)",
					       b->adapter_name[b->next_adapter], i));
		h = k_down_block(b, i, h, in);
		if (t == DB_K && (adapter = next_adapter(b, &aname)) >= 0) {
			int top = b->depth > 0 ? b->stack[b->depth - 1] : -1;
			int hr = add_residual(b, h, adapter, aname);
			if (top == h) /* in place: the skip is the same tensor */
				b->stack[b->depth - 1] = hr;
			h = hr;
		}
		return h;
	}
	P(pre, "down_blocks.%d", i);
	if (t == DB_CROSS) {
		adapter = next_adapter(b, &aname);
	} else if (t == DB_SIMPLE && b->next_adapter < b->n_adapter) {
		return fail(b, cu_fail(CLUNET_ERR_INPUT, "input '%s': a T2I-Adapter residual cannot go "
				       "into %s, a SimpleCrossAttnDownBlock2D (diffusers fails here too)",
				       b->adapter_name[b->next_adapter], pre));
	}
	for (int j = 0; j < u->layers[i]; j++) {
		P(p, "%s.resnets.%d", pre, j);
		h = resnet(b, p, h, j ? out : in, out, scale, NN_RESAMPLE_NONE,
			   simple ? u->skip_time_act : 0);
		P(p, "%s.attentions.%d", pre, j);
		if (t == DB_CROSS)
			h = transformer(b, p, h, out, u->head_param[i], u->tl_down[i][j], u->cross_dim[i],
					u->only_cross[i]);
		else if (t == DB_SIMPLE)
			h = simple_attention(b, p, h, out, u->head_param[i], u->cross_dim[i],
					     u->only_cross[i]);
		if (adapter >= 0 && j == u->layers[i] - 1)
			h = add_residual(b, h, adapter, aname);
		push(b, h);
	}
	if (!last) {
		P(p, "%s.downsamplers.0", pre);
		if (simple)
			h = resnet(b, p, h, out, out, scale, NN_RESAMPLE_DOWN, u->skip_time_act);
		else
			h = nn_downsample2d_conv(b->c, p, h, out, out, u->ds_pad);
		push(b, h);
	}
	if (t == DB_DOWN || t == DB_RESNET) { /* sample += residual, in place: the skip sees it */
		adapter = next_adapter(b, &aname);
		if (adapter >= 0) {
			h = add_residual(b, h, adapter, aname);
			if (b->depth > 0)
				b->stack[b->depth - 1] = h;
		}
	}
	return h;
}

static int mid_block(builder *b, int h)
{
	const cond_config *u = b->u;
	int n = u->n, ch = u->boc[n - 1];
	int simple = u->mid == MB_SIMPLE;
	h = resnet(b, "mid_block.resnets.0", h, ch, ch, u->mid_scale, NN_RESAMPLE_NONE,
		   simple ? u->skip_time_act : 0);
	if (u->mid == MB_CROSS)
		h = transformer(b, "mid_block.attentions.0", h, ch, u->head_param[n - 1], u->tl_mid,
				u->cross_dim[n - 1], 0);
	else if (simple) {
		if (u->head_param[n - 1] <= 0)
			return fail(b, cu_fail(CLUNET_ERR_CONFIG, "mid_block: "
					       "UNetMidBlock2DSimpleCrossAttn needs attention_head_dim "
					       "(the last entry is null)"));
		h = simple_attention(b, "mid_block.attentions.0", h, ch, u->head_param[n - 1],
				     u->cross_dim[n - 1], u->mid_only_cross);
	}
	if (u->mid == MB_PLAIN) /* UNetMidBlock2D(num_layers=0): one resnet */
		return h;
	return resnet(b, "mid_block.resnets.1", h, ch, ch, u->mid_scale, NN_RESAMPLE_NONE,
		      simple ? u->skip_time_act : 0);
}

static int up_block(builder *b, int i, int h, int prev_out, int size_h, int size_w)
{
	const cond_config *u = b->u;
	up_type t = u->up[i];
	int n = u->n, r = n - 1 - i, out = u->boc[r];
	int in = u->boc[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
	int layers = u->layers[r] + 1, simple = t == UB_SIMPLE || t == UB_RESNET;
	float scale = simple ? u->res_out_scale : 1.0f;
	char pre[64], p[128];
	cu_graph *g = b->c->g;

	if (t == UB_K || t == UB_KCROSS)
		return k_up_block(b, i, h);
	P(pre, "up_blocks.%d", i);
	for (int j = 0; j < layers; j++) {
		int res_skip = j == layers - 1 ? in : out, rin = j == 0 ? prev_out : out;
		int s = pop(b);
		if (g->status)
			return -1;
		if (cu_t(g, s)->ne[2] != cu_t(g, h)->ne[2] || cu_t(g, s)->ne[3] != cu_t(g, h)->ne[3])
			return fail(b, cu_fail(CLUNET_ERR_INPUT, "input 'sample': %s gets a %lldx%lld "
					       "map and a %lldx%lld skip; this block type cannot "
					       "upsample to odd sizes (diffusers fails here too): use a "
					       "height and width divisible by %d", pre,
					       (long long)cu_t(g, h)->ne[2], (long long)cu_t(g, h)->ne[3],
					       (long long)cu_t(g, s)->ne[2], (long long)cu_t(g, s)->ne[3],
					       1 << (n - 1)));
		if (b->m->freeu_on && i < 2 && (t == UB_UP || t == UB_CROSS)) {
			/* apply_freeu: backbone's first half * b, skip Fourier-filtered with s */
			const clunet_freeu *f = &b->m->freeu;
			h = op_scale_channels(g, h, (int)(cu_t(g, h)->ne[1] / 2), i ? f->b2 : f->b1);
			s = op_freeu_filter(g, s, i ? f->s2 : f->s1, f->threshold, f->use_fft);
		}
		h = op_concat(g, h, s);
		P(p, "%s.resnets.%d", pre, j);
		h = resnet(b, p, h, rin + res_skip, out, scale, NN_RESAMPLE_NONE,
			   simple ? u->skip_time_act : 0);
		P(p, "%s.attentions.%d", pre, j);
		if (t == UB_CROSS) {
			h = transformer(b, p, h, out, u->head_param[r], u->tl_up[i][j], u->cross_dim[r],
					u->only_cross[r]);
		} else if (t == UB_SIMPLE) {
			h = simple_attention(b, p, h, out, u->head_param[i], u->cross_dim[r],
					     u->only_cross[r]);
		} else if (t == UB_ATTN) {
			nn_attn_cfg a;
			memset(&a, 0, sizeof(a));
			a.channels = out;
			a.dim_head = u->head_param[i] ? u->head_param[i] : out;
			a.heads = out / a.dim_head;
			if (a.heads < 1)
				return fail(b, cu_fail(CLUNET_ERR_CONFIG, "%s: attention_head_dim %d is "
						       "larger than the %d channels", p, a.dim_head, out));
			a.groups = u->scale_shift ? 0 : u->groups;
			a.eps = u->eps;
			a.rescale = 1.0f;
			a.residual = 1;
			h = nn_spatial_attention(b->c, p, h, &a);
		}
	}
	if (i == n - 1)
		return h;
	P(p, "%s.upsamplers.0", pre);
	if (simple)
		return resnet(b, p, h, out, out, scale, NN_RESAMPLE_UP, u->skip_time_act);
	if (size_h && t != UB_ATTN) { /* F.interpolate(size=...) then the conv */
		conv_args a;
		h = op_nearest(g, h, size_h, size_w);
		conv_args_init(&a, 1);
		P(p, "%s.upsamplers.0.conv", pre);
		return nn_conv2d(b->c, p, h, out, out, 3, 1, &a);
	}
	return nn_upsample2d_conv(b->c, p, h, out, out);
}

/* Collects the ControlNet / T2I-Adapter residual inputs. */
static void residual_inputs(builder *b, int *ctrl, const char **ctrl_name, int *n_ctrl, int *mid)
{
	static char names[2][MAX_SKIPS][48];
	int na = 0;
	*n_ctrl = 0;
	for (int k = 0; k < MAX_SKIPS; k++) {
		P(names[0][k], "down_block_additional_residuals.%d", k);
		if ((ctrl[k] = input(b, names[0][k])) < 0)
			break;
		ctrl_name[k] = names[0][k];
		(*n_ctrl)++;
	}
	for (int k = 0; k < MAX_SKIPS; k++) {
		P(names[1][k], "down_intrablock_additional_residuals.%d", k);
		if ((b->adapter[k] = input(b, names[1][k])) < 0)
			break;
		b->adapter_name[k] = names[1][k];
		na++;
	}
	*mid = input(b, "mid_block_additional_residual");
	if (*mid < 0 && *n_ctrl > 0 && na == 0) {
		/* the deprecated T2I form: down_block_additional_residuals without a
		 * mid residual are adapter residuals */
		for (int k = 0; k < *n_ctrl; k++) {
			b->adapter[k] = ctrl[k];
			b->adapter_name[k] = ctrl_name[k];
		}
		na = *n_ctrl;
		*n_ctrl = 0;
	}
	b->n_adapter = na;
}

static int build(model *m, nn_ctx *c, const model_inputs *mi)
{
	const cond_config *u = m->config;
	cu_graph *g = c->g;
	builder *b = cu_calloc(1, sizeof(builder));
	int x, h, enc_raw, ctrl[MAX_SKIPS], mid_res, n_ctrl, in, prev;
	const char *ctrl_name[MAX_SKIPS];
	int64_t sh, sw;
	conv_args a;

	if (!b)
		return cu_graph_fail(g, CLUNET_ERR_HOST_MEMORY);
	b->c = c;
	b->u = u;
	b->m = m;
	b->mi = mi;
	b->temb_ch = u->class_concat ? 2 * u->temb_dim : u->temb_dim;
	x = input(b, "sample");
	enc_raw = input(b, "encoder_hidden_states");
	b->mask = input(b, "attention_mask");
	b->emask = input(b, "encoder_attention_mask");
	if (u->dual) {
		b->dual[0] = input(b, "encoder_hidden_states.dual0");
		b->dual[1] = input(b, "encoder_hidden_states.dual1");
	}
	residual_inputs(b, ctrl, ctrl_name, &n_ctrl, &mid_res);
	if (g->status) {
		free(b);
		return -1;
	}
	sh = cu_t(g, x)->ne[2];
	sw = cu_t(g, x)->ne[3];
	if (u->center)
		x = op_affine(g, x, 2.0f, -1.0f);

	c->temb = embeddings(b, enc_raw);
	b->enc = enc_raw;
	if (u->encoder_hid_dim)
		b->enc = nn_linear(c, "encoder_hid_proj", enc_raw, u->encoder_hid_dim, u->cross_dim[0],
				   1, CU_ACT_NONE);

	conv_args_init(&a, (u->conv_in_k - 1) / 2);
	h = nn_conv2d(c, "conv_in", x, u->in_ch, u->boc[0], u->conv_in_k, 1, &a);
	push(b, h);
	in = u->boc[0];
	for (int i = 0; i < u->n; i++) {
		h = down_block(b, i, h, in);
		in = u->boc[i];
	}
	if (n_ctrl > 0) { /* ControlNet: one residual per skip */
		if (n_ctrl != b->depth && !g->status) {
			fail(b, cu_fail(CLUNET_ERR_INPUT, "inputs 'down_block_additional_residuals.*': "
					"%d given, but the model has %d skip connections", n_ctrl,
					b->depth));
		}
		for (int k = 0; k < n_ctrl && !g->status; k++) {
			if (b->stack[k] == NONE_SKIP)
				fail(b, cu_fail(CLUNET_ERR_INPUT, "input '%s': skip %d of this model is "
						"None (a KCrossAttnDownBlock2D without downsampler) and "
						"takes no residual", ctrl_name[k], k));
			else
				b->stack[k] = add_residual(b, b->stack[k], ctrl[k], ctrl_name[k]);
		}
	}
	if (u->mid != MB_NONE)
		h = mid_block(b, h);
	if (b->next_adapter < b->n_adapter && !g->status) {
		/* T2I-Adapter-XL: one more residual for the mid block's output, if it fits */
		const cu_tensor *th = cu_t(g, h), *ta = cu_t(g, b->adapter[b->next_adapter]);
		if (th->ndim == ta->ndim && !memcmp(th->ne, ta->ne, sizeof(int64_t) * 4)) {
			const char *name;
			int r = next_adapter(b, &name);
			h = op_add(g, h, r);
		}
	}
	if (b->next_adapter < b->n_adapter && !g->status)
		fail(b, cu_fail(CLUNET_ERR_INPUT, "input '%s': the model has no place for this "
				"T2I-Adapter residual (%d were given; diffusers would ignore it)",
				b->adapter_name[b->next_adapter], b->n_adapter));
	if (mid_res >= 0)
		h = add_residual(b, h, mid_res, "mid_block_additional_residual");

	prev = u->boc[u->n - 1];
	for (int i = 0; i < u->n; i++) {
		int size_h = 0, size_w = 0, layers = u->layers[u->n - 1 - i] + 1;
		int64_t mult = 1LL << (u->n - 1);
		if (i < u->n - 1 && (sh % mult || sw % mult) && b->depth > layers && !g->status) {
			const cu_tensor *s = cu_t(g, b->stack[b->depth - layers - 1]);
			size_h = (int)s->ne[2];
			size_w = (int)s->ne[3];
		}
		h = up_block(b, i, h, prev, size_h, size_w);
		prev = u->boc[u->n - 1 - i];
	}
	if (u->groups)
		h = nn_group_norm(c, "conv_norm_out", h, u->groups, u->eps, 1, -1, u->act);
	conv_args_init(&a, (u->conv_out_k - 1) / 2);
	h = nn_conv2d(c, "conv_out", h, u->boc[0], u->out_ch, u->conv_out_k, 1, &a);
	free(b);
	return h;
}

/* ------------------------------------------------------------ examples */

/* Widths of text_embeds and the count of time_ids for text_time. */
static void text_time_split(const cond_config *u, int64_t *text_w, int64_t *n_ids)
{
	*n_ids = 6; /* SDXL: original size, crop, target size */
	while (*n_ids > 1 && u->proj_class_dim - *n_ids * u->add_time_dim <= 0)
		(*n_ids)--;
	*text_w = u->proj_class_dim - *n_ids * u->add_time_dim;
}

static int64_t ctx_width(const cond_config *u)
{
	return u->ctx_dim;
}

/* Slots with shapes only: everything the model can use, so the dry build
 * reads every weight. */
static clunet_status load_inputs(model *m, model_inputs *mi)
{
	const cond_config *u = m->config;
	int64_t mult = 2LL << (u->n - 1), one = 1; /* the K blocks' padding needs 2x2 at the bottom */
	int64_t sample[4] = { 1, u->in_ch, mult, mult }, enc[3] = { 1, ctx_width(u), 1 };
	clunet_status st = model_slot_shape(mi, CU_F32, 4, sample);
#define SLOT(dt, nd, ne, name) \
	do { if (!st && !(st = model_slot_shape(mi, dt, nd, ne))) model_slot_name(mi, name); } while (0)
	if (!st)
		model_slot_name(mi, "sample");
	SLOT(CU_F32, 1, &one, "timestep");
	SLOT(CU_F32, 3, enc, "encoder_hidden_states");
	if (u->dual) {
		SLOT(CU_F32, 3, enc, "encoder_hidden_states.dual0");
		SLOT(CU_F32, 3, enc, "encoder_hidden_states.dual1");
	}
	if (u->cls == CE_EMBEDDING) {
		SLOT(CU_I32, 1, &one, "class_labels");
	} else if (u->cls == CE_TIMESTEP) {
		SLOT(CU_F32, 1, &one, "class_labels");
	} else if (u->cls != CE_NONE) {
		int64_t ne[2] = { 1, u->cls == CE_IDENTITY ? u->temb_dim : u->proj_class_dim };
		SLOT(CU_F32, 2, ne, "class_labels");
	}
	if (u->cond_proj_dim) {
		int64_t ne[2] = { 1, u->cond_proj_dim };
		SLOT(CU_F32, 2, ne, "timestep_cond");
	}
	if (u->add == AE_TEXT_TIME) {
		int64_t tw, ids, te[2];
		text_time_split(u, &tw, &ids);
		te[0] = 1;
		te[1] = tw;
		SLOT(CU_F32, 2, te, "text_embeds");
		SLOT(CU_F32, 1, &ids, "time_ids");
	}
#undef SLOT
	return st;
}

static clunet_status example_inputs(model *m, const clunet_example_shape *s, clunet_tensor *out,
				    size_t *n, void **storage)
{
	const cond_config *u = m->config;
	int mult = 1 << (u->n - 1);
	int64_t batch = s->batch > 0 ? s->batch : 1;
	int64_t h = s->height > 0 ? s->height : (u->sample_h ? u->sample_h : 64);
	int64_t w = s->width > 0 ? s->width : (u->sample_w ? u->sample_w : 64);
	int64_t tokens = s->length > 0 ? s->length : u->dual ? 334 : 77, D = ctx_width(u), tw = 0,
		ids = 0;
	size_t ns, ne, nc, nt, total, off = 0;
	float *buf;
	cu_rng r;
	size_t k = 0;

	if (s->height < 0 || s->width < 0)
		h = w = 2 * mult;
	if (u->add == AE_TEXT_TIME)
		text_time_split(u, &tw, &ids);
	ns = (size_t)(batch * u->in_ch * h * w);
	ne = (size_t)(batch * tokens * D);
	nc = (size_t)batch * (size_t)(u->temb_dim + u->proj_class_dim + u->cond_proj_dim + 1);
	nt = (size_t)(batch * (tw + ids));
	total = ns + ne + nc + nt + 2 * (size_t)batch + 16;
	buf = cu_calloc(total, sizeof(float));
	if (!buf)
		return CLUNET_ERR_HOST_MEMORY;
	cu_rng_seed(&r, s->seed);
	memset(out, 0, 8 * sizeof(clunet_tensor));
	for (size_t i = 0; i < ns; i++)
		buf[off + i] = cu_rng_normal(&r);
	out[k++] = (clunet_tensor){ "sample", CLUNET_F32, 4, { batch, u->in_ch, h, w }, buf + off, 0 };
	off += ns;
	for (int64_t i = 0; i < batch; i++)
		buf[off + i] = 999.0f - 97.0f * (float)(i % 10);
	out[k++] = (clunet_tensor){ "timestep", CLUNET_F32, 1, { batch }, buf + off, 0 };
	off += (size_t)batch;
	for (size_t i = 0; i < ne; i++)
		buf[off + i] = cu_rng_normal(&r);
	out[k++] = (clunet_tensor){ "encoder_hidden_states", CLUNET_F32, 3, { batch, tokens, D },
				    buf + off, 0 };
	off += ne;
	if (u->cls == CE_EMBEDDING) {
		for (int64_t i = 0; i < batch; i++) {
			int32_t v = (int32_t)(i % u->num_class_embeds);
			memcpy(&buf[off + i], &v, 4);
		}
		out[k++] = (clunet_tensor){ "class_labels", CLUNET_I32, 1, { batch }, buf + off, 0 };
		off += (size_t)batch;
	} else if (u->cls == CE_TIMESTEP) {
		for (int64_t i = 0; i < batch; i++)
			buf[off + i] = 20.0f + (float)i;
		out[k++] = (clunet_tensor){ "class_labels", CLUNET_F32, 1, { batch }, buf + off, 0 };
		off += (size_t)batch;
	} else if (u->cls != CE_NONE) {
		int64_t cw = u->cls == CE_IDENTITY ? u->temb_dim : u->proj_class_dim;
		for (int64_t i = 0; i < batch * cw; i++)
			buf[off + i] = cu_rng_normal(&r);
		out[k++] = (clunet_tensor){ "class_labels", CLUNET_F32, 2, { batch, cw }, buf + off, 0 };
		off += (size_t)(batch * cw);
	}
	if (u->cond_proj_dim) {
		for (int64_t i = 0; i < batch * u->cond_proj_dim; i++)
			buf[off + i] = cu_rng_normal(&r);
		out[k++] = (clunet_tensor){ "timestep_cond", CLUNET_F32, 2, { batch, u->cond_proj_dim },
					    buf + off, 0 };
		off += (size_t)(batch * u->cond_proj_dim);
	}
	if (u->add == AE_TEXT_TIME) {
		static const float sdxl_ids[6] = { 1024, 1024, 0, 0, 1024, 1024 };
		for (int64_t i = 0; i < batch * tw; i++)
			buf[off + i] = cu_rng_normal(&r);
		out[k++] = (clunet_tensor){ "added_cond_kwargs.text_embeds", CLUNET_F32, 2, { batch, tw },
					    buf + off, 0 };
		off += (size_t)(batch * tw);
		for (int64_t i = 0; i < batch * ids; i++)
			buf[off + i] = sdxl_ids[i % ids % 6];
		out[k++] = (clunet_tensor){ "added_cond_kwargs.time_ids", CLUNET_F32, 2, { batch, ids },
					    buf + off, 0 };
		off += (size_t)(batch * ids);
	}
	*n = k;
	*storage = buf;
	return CLUNET_OK;
}

const model_vt unet2dcond_vt = {
	.class_name = "UNet2DConditionModel",
	.parse_config = parse_config,
	.prepare_inputs = prepare_inputs,
	.load_inputs = load_inputs,
	.build = build,
	.example_inputs = example_inputs,
	.deprecated_attention = 1,
	.freeu = 1,
	.lora = 1,
};
