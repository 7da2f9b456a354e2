/* diffusers building blocks as graph builders. A block function takes the
 * weight-name prefix diffusers gives the module ("down_blocks.0.resnets.1")
 * and appends the ops of its forward(); the C reads like the Python.
 *
 * Weights are asked for by name and expected shape. The model supplies them
 * through nn_weight_source (it knows the file and the naming); the store
 * here uploads each once, in the layout the op wants (convolutions packed
 * into panels), and hands out the same device buffer to every later graph.
 */
#ifndef CLUNET_NN_H
#define CLUNET_NN_H

#include "ops/ops.h"

typedef enum nn_wrole {
	NN_W_MATRIX, /* conv or linear weight: fan-in = product of dims after the first */
	NN_W_BIAS,
	NN_W_NORM_SCALE,
	NN_W_NORM_SHIFT,
	NN_W_EMBED,
	NN_W_FOURIER,
	NN_W_CUBIC_DOWN, /* buffers holding diffusers' fixed 1-D resampling kernels */
	NN_W_CUBIC_UP,
} nn_wrole;

/* Fills `data` (numel floats) with the tensor `name` of exactly this shape,
 * or fails with a message naming it. */
typedef clunet_status (*nn_fetch_fn)(void *user, const char *name, int ndim, const int64_t *shape,
				     nn_wrole role, float *data);

/* The tensor `name` of exactly this shape, float32, in the checkpoint's
 * layout, in memory the device reads directly (a CPU-class device sharing
 * host memory: where the mapped file has it, or converted into a buffer the
 * host maps): *mem (a new reference) and the tensor's element offset in it;
 * *mem NULL when it must be fetched (copied, packed) instead. Fails with a
 * message like fetch. */
typedef clunet_status (*nn_map_fn)(void *user, const char *name, int ndim, const int64_t *shape,
				   nn_wrole role, cl_mem *mem, size_t *off);

typedef struct nn_store nn_store;

/* ---- LoRA layers (held by the store, applied by nn_conv2d / nn_linear*) ---- */

typedef enum nn_lora_mode { NN_LORA_NONE, NN_LORA_UNFUSED, NN_LORA_FUSED } nn_lora_mode;

typedef struct nn_lora_layer {
	char *prefix;     /* the layer, e.g. "down_blocks.0.attentions.0.proj_in" */
	int rank, in, out, kh, kw;
	float *down;      /* [rank][in][kh][kw] */
	float *up;        /* [out][rank] */
	float factor;     /* alpha / rank, or 1 without an alpha */
	int unscaled;     /* unfused, it runs at scale 1 whatever the scale (diffusers'
			     pre-processing layers, run before the scale is applied) */
} nn_lora_layer;

/* Every conv or linear layer the store holds (after the loading build). */
typedef void (*nn_layer_fn)(void *user, const char *prefix, int out, int in, int kh, int kw);
void nn_store_layers(nn_store *s, nn_layer_fn fn, void *user);
/* Takes the layers (and frees them later), unfused at this scale. Graphs
 * built afterwards carry the LoRA paths. */
clunet_status nn_store_lora_set(nn_store *s, nn_lora_layer *layers, int n, float scale);
/* Rewrites the scaled up weights in place: plans stay valid. */
clunet_status nn_store_lora_scale(nn_store *s, float scale);
clunet_status nn_store_lora_fuse(nn_store *s, float scale);
clunet_status nn_store_lora_unfuse(nn_store *s);
/* Drops the layers; weights they were fused into stay fused. */
void nn_store_lora_clear(nn_store *s);
nn_lora_mode nn_store_lora_mode(const nn_store *s);
float nn_store_lora_current_scale(const nn_store *s);

/* map may be NULL (every weight copied). */
nn_store *nn_store_new(rt_ctx *rt, nn_fetch_fn fetch, nn_map_fn map, void *user);
void nn_store_free(nn_store *s);
uint64_t nn_store_bytes(const nn_store *s);

typedef struct nn_ctx {
	cu_graph *g;
	rt_ctx *rt;
	nn_store *store;
	int temb;                  /* time embedding [N, D] of the model, or -1 */
	int temb_act[5];           /* act(temb) per activation, built on first use */
	/* attention choices (clunet_attention_options): none changes the result */
	int attn_slice;            /* > 0: plain attention in slices of this many heads */
	int fused_qkv;             /* one projection for q, k, v (k, v for cross-attention) */
	int attn_kernel;           /* -1 planner, 0 plain, 1 fused (memory-efficient) */
} nn_ctx;

void nn_ctx_init(nn_ctx *c, cu_graph *g, nn_store *store);

/* A weight of this shape as a graph tensor (-1 and a graph error if the
 * source fails). The name is printf-formatted. */
int nn_weight(nn_ctx *c, nn_wrole role, int ndim, const int64_t *shape, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The packed weights of several layers with the same input, stacked along
 * the outputs (names[i] of outs[i] rows each; `in` inputs), cached under key;
 * bias (if not NULL) gets the stacked biases, or -1 when has_bias is 0. */
int nn_stacked_linear(nn_ctx *c, const char *key, const char *const *prefixes, int n,
		      const int *outs, int in, int has_bias, int *bias);
/* Whether the store holds an unfused LoRA for this layer. */
int nn_has_lora(nn_ctx *c, const char *prefix);
/* A constant tensor from host data, cached under `key`. */
int nn_const(nn_ctx *c, const char *key, int ndim, const int64_t *shape, const float *data);
/* act(temb), computed once per activation and graph. */
int nn_temb_act(nn_ctx *c, cu_act act);

/* ---- layers ---- */

/* nn.Conv2d(ic, oc, k) at prefix (weight [oc, ic, k, k], bias [oc] if bias). */
int nn_conv2d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int bias,
	      conv_args *a);
/* nn.Conv1d(ic, oc, k) at prefix on [N, ic, L] (weight [oc, ic, k]); a sets
 * stride, pad_l/pad_r and the epilogue. */
int nn_conv1d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int bias, conv_args *a);
/* nn.ConvTranspose1d(ic, oc, k, stride=2, padding) at prefix (weight [ic, oc, k], bias). */
int nn_conv_transpose1d(nn_ctx *c, const char *prefix, int x, int ic, int oc, int k, int padding);
/* nn.Linear(in, out) at prefix on x [N, in]; act applied to the output. */
/* diffusers' GEGLU: x, gate = linear(x) (out outputs, with bias) halves;
 * x * gelu(gate) with out / 2 channels, folded into the projection where
 * the op allows (op_conv_geglu). */
int nn_linear_geglu(nn_ctx *c, const char *prefix, int x, int in, int out);
int nn_linear(nn_ctx *c, const char *prefix, int x, int in, int out, int bias, cu_act act);
/* The same with a full epilogue (residual, output division, activation). */
int nn_linear_ex(nn_ctx *c, const char *prefix, int x, int in, int out, int bias, conv_args *a);
/* The linear layer at prefix over h x w pixels can read its input in
 * conv_pv's padded layout (op_conv1x1_pv_pitch): that pitch, else 0 (not a
 * conv_pv convolution here, or an unfused LoRA on the layer). */
int nn_linear_pitch(nn_ctx *c, const char *prefix, int in, int out, int h, int w);
/* nn_linear_ex over xp [N, in, pitch] in that layout; returns [N, out, h, w]. */
int nn_linear_padded(nn_ctx *c, const char *prefix, int xp, int h, int w, int in, int out,
		     int bias, conv_args *a);
/* nn.GroupNorm(groups, C, eps, affine) at prefix, then act (scale-shift ss optional). */
int nn_group_norm(nn_ctx *c, const char *prefix, int x, int groups, float eps, int affine,
		  int ss, cu_act act);
/* Affine GroupNorm, act, then + post [N, C] and + res (x's shape), either -1. */
int nn_group_norm_ex(nn_ctx *c, const char *prefix, int x, int groups, float eps, int ss,
		     cu_act act, int post, int res);

/* ---- embeddings (diffusers models/embeddings.py) ---- */

/* TimestepEmbedding: linear_1 -> act -> linear_2 (out = out_dim) */
int nn_timestep_embedding(nn_ctx *c, const char *prefix, int x, int in, int dim, int out_dim,
			  cu_act act);

/* ---- resampling (models/upsampling.py, downsampling.py) ---- */

/* Downsample2D(use_conv=True, padding): 3x3 stride-2 conv; padding 0 pads
 * right and bottom by one first. Weights at prefix.conv. */
int nn_downsample2d_conv(nn_ctx *c, const char *prefix, int x, int ch, int out_ch, int padding);
/* Upsample2D(use_conv=True): nearest x2 then 3x3 conv, fused. Weights at prefix.conv. */
int nn_upsample2d_conv(nn_ctx *c, const char *prefix, int x, int ch, int out_ch);
/* FIR resampling with the (1, 3, 3, 1) kernel: upfirdn2d_native as
 * downsample_2d / upsample_2d use it. */
int nn_fir_down(nn_ctx *c, int x);
int nn_fir_up(nn_ctx *c, int x);

/* ---- ResnetBlock2D (models/resnet.py) ---- */

typedef enum nn_resample { NN_RESAMPLE_NONE, NN_RESAMPLE_UP, NN_RESAMPLE_DOWN } nn_resample;

typedef struct nn_resnet2d_cfg {
	int in_ch, out_ch;
	int groups, groups_out;
	float eps;
	cu_act act;
	int scale_shift;     /* time_embedding_norm "scale_shift" */
	int has_temb;        /* temb_channels is not None */
	int temb_ch;
	int skip_time_act;
	float output_scale;  /* output_scale_factor */
	int use_in_shortcut; /* -1: in != out */
	nn_resample resample;
	int fir;             /* kernel="fir" for up/down */
} nn_resnet2d_cfg;

void nn_resnet2d_cfg_init(nn_resnet2d_cfg *r, int in_ch, int out_ch, int groups, float eps,
			  cu_act act, int scale_shift, int temb_ch);
int nn_resnet2d(nn_ctx *c, const char *prefix, int x, const nn_resnet2d_cfg *r);

/* ---- Attention over the pixels of [N, C, H, W] (attention_processor.py
 * AttnProcessor, as the deprecated attention blocks use it). ---- */

typedef struct nn_attn_cfg {
	int channels;
	int heads, dim_head;
	int groups; /* GroupNorm before attention, 0 for none */
	float eps;
	float rescale;
	int residual;
	int names_1d; /* SelfAttention1d's query/key/value/proj_attn, not to_q/.../to_out.0 */
	int no_qkv_bias; /* to_q/to_k/to_v without bias (transformer blocks) */
	int ctx_dim;  /* cross-attention: width of the context; 0 for self-attention */
} nn_attn_cfg;

/* Whether attention with this many scores runs fused (no score matrix). */
int nn_attention_fused(const nn_ctx *c, int64_t score_elems, int lq);
/* softmax(q k^T / sqrt(d) + mask) v for channel-major q [N*heads][d][lq] and
 * k, v [N*heads][d][lk], mask [N][lk] or -1; plain or fused by size. */
int nn_attention_core(nn_ctx *c, int q, int k, int v, int mask, int n, int heads, int d, int lq,
		      int lk, int out_ndim, const int64_t *out_ne);
/* diffusers' Attention (AttnProcessor math) over the pixels of [N, C, H, W]
 * or the positions of [N, C, L]: queries from x, keys and values from the
 * channel-major context ctx [N, ctx_dim, L] (or from x), an additive mask
 * [N, keys] or -1, and to_out's output + res (or -1), / rescale. */
int nn_attention(nn_ctx *c, const char *prefix, int x, int ctx, int mask, int res,
		 const nn_attn_cfg *a);
/* Self-attention with x as the residual when a->residual. */
int nn_spatial_attention(nn_ctx *c, const char *prefix, int x, const nn_attn_cfg *a);

/* ---- Transformer2DModel (continuous input) ---- */

typedef struct nn_transformer_cfg {
	int channels;       /* in_channels */
	int heads, dim_head;
	int layers;
	int groups;         /* GroupNorm groups (eps 1e-6) */
	int linear_proj;    /* use_linear_projection */
	int only_cross;     /* attn1 attends to the context too */
	int cross_dim;      /* cross_attention_dim (0: no attn2) */
	int double_self;    /* attn2 is a second self-attention */
} nn_transformer_cfg;

/* x [N, C, H, W]; ctx [N, cross_dim, L] channel-major; masks [N, keys] or -1. */
int nn_transformer2d(nn_ctx *c, const char *prefix, int x, int ctx, int self_mask, int cross_mask,
		     const nn_transformer_cfg *t);

/* ---- 1-D blocks (models/unets/unet_1d_blocks.py, resnet.py) ---- */

/* ResConvBlock(in, mid, out, is_last) */
int nn_resconv1d(nn_ctx *c, const char *prefix, int x, int in, int mid, int out, int is_last);
/* ResidualTemporalBlock1D(in, out, embed_dim): t is the time embedding [N, embed]. */
int nn_residual_temporal1d(nn_ctx *c, const char *prefix, int x, int t, int in, int out, int embed);
/* Downsample1d / Upsample1d("cubic") at prefix (its `kernel` buffer). */
int nn_cubic1d(nn_ctx *c, const char *prefix, int x, int up);

/* Parses diffusers' get_activation names ("silu", "swish", "mish", "gelu",
 * "relu"; case-insensitive). */
int nn_parse_act(const char *name, cu_act *act);

#endif
