#!/usr/bin/env python3
"""Generate reference fixtures for the C/OpenCL UNet implementation from the REAL diffusers 0.26.3.

Install (Debian):
    apt-get install python3-torch            # torch 1.13 for /usr/bin/python3
    /usr/bin/python3 -m pip install --break-system-packages \\
        diffusers==0.26.3 huggingface_hub==0.20.3 safetensors
    (numpy comes with python3-torch)

Usage:
    /usr/bin/python3 tools/make_fixtures.py [--out tests/data] [--only NAME ...] [--list]

The references are computed with the netlib reference BLAS (packages libblas3, liblapack3), whatever the
system's libblas.so.3 alternative is (e.g. OpenBLAS): the script re-executes itself with netlib's library
directories first on LD_LIBRARY_PATH, and refuses to run if torch still loads another BLAS
(MAKE_FIXTURES_ANY_BLAS=1 overrides; expect last-bit differences in the expected outputs then).

`--only` takes case names (or family names); `--list` prints the case table and exits.
Everything is deterministic: each case seeds torch itself.

What a fixture is
-----------------
One folder per case: <out>/<family>/<case>/ (family "unet2d" = diffusers UNet2DModel, "unet1d" =
UNet1DModel), holding
  config.json                         the model config exactly as diffusers' save_pretrained/save_config
                                      writes it (keeps `_class_name`, `_diffusers_version`); a case may add
                                      keys diffusers 0.26.3 does not know (`extra_config`, e.g. a newer
                                      version's `time_embedding_dim`), merged in the same sorted format.
  diffusion_pytorch_model.safetensors the weights: random, every element non-zero. Stored in the case's
                                      weight dtype (F32, F16 or BF16). Cases marked "deprecated attention
                                      names" use the old google checkpoint key names for the deprecated
                                      attention blocks (query/key/value/proj_attn instead of
                                      to_q/to_k/to_v/to_out.0); diffusers renames them on load.
  inputs.safetensors                  the forward() arguments by name: `sample` (F32), `timestep`
                                      (I64/I32/F32/F64, 0-d or shape (B,)), `class_labels` when used.
                                      Python-number arguments (diffusers turns a Python int/float timestep
                                      into torch.tensor([t], dtype=torch.long), i.e. TRUNCATES a float) are
                                      stored as 0-d tensors (F64 for a float, I64 for an int) and named in
                                      the safetensors metadata `{"python_scalars": "timestep"}` (comma-
                                      separated argument names; no metadata when there are none). The
                                      reference ran with the Python number itself.
  expected.safetensors                `sample`: diffusers' output, stored as F64.
  meta.json                           family, case, reference_dtype ("float64"/"float32"), weights_dtype,
                                      description (+ some extra informative fields; `python_scalars` when
                                      an argument was a Python number).
A README.md per family (generated) lists the cases and what each covers.

How the reference is computed
-----------------------------
The model is built from the config (per-case torch.manual_seed), then EVERY parameter and persistent
buffer is overwritten with non-zero random values (diffusers zero-initialises some layers; real checkpoints
do not). Exception: the fixed resampling kernels of the 1-D audio blocks (`Downsample1d`/`Upsample1d`
`kernel` buffers) keep their true values, as real checkpoints hold exactly those (they are non-zero).
A case may patch the freshly built model (`model_patch`, e.g. to emulate a later diffusers version's
layer shapes); the patch is applied to every copy of the model, including the from_pretrained check. Weights are rounded to the storage dtype, written, read back, and the reference model is built
from exactly the stored values, then cast to the reference dtype (`.double()` normally; float32 where
diffusers cannot run in float64), put in eval() mode and run under no_grad with the stored inputs
(floating inputs cast to the reference dtype, integer inputs unchanged).
Note that even in a float64 run diffusers computes some things in float32 (the sinusoidal timestep
projection, the upcast attention softmax). That is diffusers' behaviour and it is kept.
Torch 1.13 trap: Attention.get_attention_scores uses torch.empty + baddbmm(beta=0), which can leak NaN from
uninitialised memory; it is monkeypatched to a zero-filled input with beta=1 (bit-identical otherwise).
Every folder is then re-loaded with `<ModelClass>.from_pretrained(folder)` (which exercises diffusers' own
deprecated-name conversion) and must reproduce the expected output bit for bit (patched cases: loaded with
ignore_mismatched_sizes, only the patched keys may mismatch, then patched and those keys loaded from the
file).

Adding model families
---------------------
Add a list of `Case` objects (name, model class name, config, input builder, options) and register it in
FAMILIES below; input builders return a dict of forward() keyword arguments in their storage dtypes (a
Python int/float for an argument that is to be passed as a Python number).
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

# --------------------------------------------------------------------------------------------------
# Reference BLAS. Debian's torch uses whatever libblas.so.3 the system alternative points at; OpenBLAS and
# the netlib reference BLAS sum in different orders, which changes the last bits of the float64/float32
# references. The fixtures are made with netlib's: the script re-executes itself once with netlib's
# directories first on LD_LIBRARY_PATH (set MAKE_FIXTURES_ANY_BLAS=1 to use whatever is installed).
# --------------------------------------------------------------------------------------------------
_ANY_BLAS_ENV = "MAKE_FIXTURES_ANY_BLAS"
_PINNED_ENV = "MAKE_FIXTURES_BLAS_PINNED"


def _netlib_dirs() -> List[str]:
    import sysconfig

    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    return [f"/usr/lib/{multiarch}/blas", f"/usr/lib/{multiarch}/lapack"]


def _pin_reference_blas() -> None:
    if os.environ.get(_ANY_BLAS_ENV) or os.environ.get(_PINNED_ENV) or not sys.platform.startswith("linux"):
        return
    dirs = [d for d in _netlib_dirs() if os.path.isdir(d)]
    if not dirs:
        return  # checked again after torch is loaded
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(dirs + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p])
    env[_PINNED_ENV] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def loaded_blas() -> List[str]:
    """Paths of the BLAS/LAPACK libraries mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line or "lapack" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


if __name__ == "__main__":
    _pin_reference_blas()

import torch

EXPECTED_DIFFUSERS_VERSION = "0.26.3"

try:
    import diffusers
    import safetensors
    import safetensors.torch
    from diffusers.models import attention_processor as _attention_processor
    from diffusers.utils import logging as _diffusers_logging
except ImportError as exc:  # pragma: no cover
    sys.exit(f"missing dependency ({exc}); see the header of {__file__} for how to install")

STORAGE_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
SAFETENSORS_DTYPE_NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
}
REFERENCE_DTYPES = {"float64": torch.float64, "float32": torch.float32}

# deprecated attention parameter names (old google checkpoints) <- current diffusers names
DEPRECATED_ATTN_RENAMES = [
    (".to_q.", ".query."),
    (".to_k.", ".key."),
    (".to_v.", ".value."),
    (".to_out.0.", ".proj_attn."),
]

# Smallest magnitude any random weight may have (representable as a normal number in F16 and BF16).
MIN_ABS_WEIGHT = 1e-4


# --------------------------------------------------------------------------------------------------
# torch 1.13 NaN trap: patched copy of diffusers 0.26.3 Attention.get_attention_scores
# --------------------------------------------------------------------------------------------------
def _get_attention_scores_zero_init(self, query, key, attention_mask=None):
    """Copy of diffusers 0.26.3 `Attention.get_attention_scores`, except that without a mask the baddbmm
    input is a zero-filled tensor with beta=1 instead of torch.empty with beta=0 (torch 1.13 can let NaN from
    the uninitialised memory through). 0 + alpha*q@k^T == alpha*q@k^T exactly, so results are identical."""
    dtype = query.dtype
    if self.upcast_attention:
        query = query.float()
        key = key.float()

    if attention_mask is None:
        baddbmm_input = torch.zeros(
            query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype, device=query.device
        )
        beta = 1
    else:
        baddbmm_input = attention_mask
        beta = 1

    attention_scores = torch.baddbmm(
        baddbmm_input,
        query,
        key.transpose(-1, -2),
        beta=beta,
        alpha=self.scale,
    )
    del baddbmm_input

    if self.upcast_softmax:
        attention_scores = attention_scores.float()

    attention_probs = attention_scores.softmax(dim=-1)
    del attention_scores

    attention_probs = attention_probs.to(dtype)

    return attention_probs


def install_patches():
    _attention_processor.Attention.get_attention_scores = _get_attention_scores_zero_init


# --------------------------------------------------------------------------------------------------
# Case description
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    name: str
    model_class: str  # attribute of the `diffusers` package
    config: dict
    make_inputs: Callable[[torch.Generator], Dict[str, torch.Tensor]]  # forward kwargs, storage dtypes
    description: str
    seed: int
    weights_dtype: str = "F32"  # "F32" | "F16" | "BF16"
    deprecated_attention_names: bool = False
    reference_dtype: str = "float64"  # "float64" | "float32"
    reference_dtype_reason: str = ""
    fourier_scale: float = 16.0  # magnitude of GaussianFourierProjection weights (randn * scale)
    # keys merged into the written config.json that diffusers 0.26.3 does not accept (not passed to the model)
    extra_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # called as model_patch(model, case) right after every construction of the model
    model_patch: Optional[Callable[[torch.nn.Module, "Case"], None]] = None
    # state-dict keys whose shapes the patch changes (plain 0.26.3 from_pretrained sees them as mismatched)
    patched_keys: Tuple[str, ...] = ()
    meta_extra: Dict[str, Any] = dataclasses.field(default_factory=dict)  # extra meta.json fields
    family: str = ""  # filled in by FAMILIES registration


# ---- input builders -----------------------------------------------------------------------------
def _randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen, dtype=torch.float32).to(dtype)


def _rand(gen, *shape, dtype=torch.float32):
    return torch.rand(*shape, generator=gen, dtype=torch.float32).to(dtype)


def inputs_ddpm_cifar10_small(gen):
    return {
        "sample": _randn(gen, 1, 3, 32, 32),
        "timestep": torch.tensor(781, dtype=torch.int64),  # 0-d integer
    }


def inputs_butterflies_style(gen):
    return {
        "sample": _randn(gen, 2, 3, 32, 32),
        "timestep": torch.tensor([999.0, 12.75], dtype=torch.float32),
    }


def inputs_ncsnpp_small(gen):
    return {
        # image-like data in [0, 1): center_input_sample maps it to [-1, 1)
        "sample": _rand(gen, 2, 3, 16, 16),
        # sigmas (noise levels), must be > 0: the Fourier embedding takes log(sigma), output is divided by sigma
        "timestep": torch.tensor([0.5, 3.0], dtype=torch.float32),
    }


def inputs_resnet_updown_scaleshift(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([17.25, 503.5], dtype=torch.float64),
    }


def inputs_learned_classes_gelu(gen):
    return {
        "sample": _randn(gen, 2, 3, 16, 32),  # non-square on purpose (H=16, W=32)
        "timestep": torch.tensor([3, 999], dtype=torch.int32),  # indices into the learned table (< 1000)
        "class_labels": torch.tensor([7, 2], dtype=torch.int64),  # indices into nn.Embedding(10, ...)
    }


def inputs_identity_relu_bf16(gen):
    return {
        "sample": _randn(gen, 1, 3, 16, 16),
        "timestep": torch.tensor(37.5, dtype=torch.float32),  # 0-d float
        "class_labels": _randn(gen, 1, 4 * 32),  # class_embed_type identity: width 4*block_out_channels[0]
    }


def inputs_class_timestep_fp32(gen):
    return {
        "sample": _randn(gen, 2, 3, 16, 16),
        "timestep": torch.tensor([10, 500], dtype=torch.int64),
        "class_labels": torch.tensor([3.0, 42.5], dtype=torch.float32),  # go through time_proj (sinusoid)
    }


# ---- UNet2DModel cases ----------------------------------------------------------------------------
UNET2D_CASES: List[Case] = [
    Case(
        name="ddpm_cifar10_small",
        model_class="UNet2DModel",
        seed=1001,
        deprecated_attention_names=True,
        config=dict(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=[16, 16, 16, 16],
            down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            layers_per_block=2,
            downsample_padding=0,
            flip_sin_to_cos=False,
            freq_shift=1,
            norm_eps=1e-6,
            norm_num_groups=4,
            attention_head_dim=None,
            act_fn="silu",
            time_embedding_type="positional",
            center_input_sample=False,
            mid_block_scale_factor=1,
            resnet_time_scale_shift="default",
            add_attention=True,
        ),
        make_inputs=inputs_ddpm_cifar10_small,
        description=(
            "google/ddpm-cifar10-32 layout at reduced width (block_out_channels [16,16,16,16] instead of "
            "[128,256,256,256]; norm_num_groups 4 instead of 32, i.e. the same 4 channels per group): "
            "DownBlock2D/AttnDownBlock2D/UpBlock2D/AttnUpBlock2D, layers_per_block 2 (3 resnets per up block), "
            "downsample_padding 0 (asymmetric right/bottom pad before the stride-2 conv), positional time "
            "embedding with flip_sin_to_cos false and freq_shift 1, norm_eps 1e-6, attention_head_dim null "
            "(one head of dim C), silu, 32x32, batch 1, 0-d int64 timestep; deprecated attention key names "
            "(query/key/value/proj_attn) in the weight file."
        ),
    ),
    Case(
        name="butterflies_style",
        model_class="UNet2DModel",
        seed=1002,
        config=dict(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=[8, 8, 16, 16, 16, 16],
            down_block_types=[
                "DownBlock2D",
                "DownBlock2D",
                "DownBlock2D",
                "DownBlock2D",
                "AttnDownBlock2D",
                "DownBlock2D",
            ],
            up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
            layers_per_block=2,
            attention_head_dim=8,
            norm_num_groups=4,
            attn_norm_num_groups=8,
            norm_eps=1e-5,
            flip_sin_to_cos=True,
            freq_shift=0,
            act_fn="silu",
            downsample_padding=1,
        ),
        make_inputs=inputs_butterflies_style,
        description=(
            "diffusers-tutorial DDPM (ddpm-butterflies-128) layout, 6 levels at reduced width "
            "([8,8,16,16,16,16], 32x32 so the bottom level is 1x1): attention_head_dim 8 => 2 heads of dim 8 "
            "in AttnDownBlock2D, AttnUpBlock2D and the mid attention; attn_norm_num_groups 8 (mid-block "
            "attention GroupNorm) differs from norm_num_groups 4; layers_per_block 2; downsample_padding 1; "
            "flip_sin_to_cos true, freq_shift 0; norm_eps 1e-5; silu; batch 2 with one float32 timestep per "
            "item (fractional 12.75)."
        ),
    ),
    Case(
        name="ncsnpp_small",
        model_class="UNet2DModel",
        seed=1003,
        deprecated_attention_names=True,
        reference_dtype="float32",
        reference_dtype_reason=(
            "the FIR resampling of the Skip blocks builds a float32 kernel and fails on float64 inputs"
        ),
        config=dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            block_out_channels=[32, 32, 16],
            down_block_types=["SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"],
            up_block_types=["SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"],
            layers_per_block=1,
            time_embedding_type="fourier",
            flip_sin_to_cos=True,
            freq_shift=0,
            center_input_sample=True,
            mid_block_scale_factor=1.41421356237,
            norm_eps=1e-6,
            norm_num_groups=None,
            attention_head_dim=None,
            act_fn="silu",
        ),
        make_inputs=inputs_ncsnpp_small,
        description=(
            "google/ncsnpp-* (NCSN++ / score SDE VE) layout at reduced size: SkipDownBlock2D, "
            "AttnSkipDownBlock2D, SkipUpBlock2D, AttnSkipUpBlock2D (FIR up/down resampling, RGB skip path summed "
            "into the output), Fourier time embedding (GaussianFourierProjection, scale 16, log(sigma), "
            "sin first; config flip_sin_to_cos true is ignored by this path; output divided by sigma), "
            "center_input_sample true, mid_block_scale_factor 1.41421356237, norm_num_groups null (Skip blocks "
            "compute their own groups: min(C//4,32) etc.; AttnSkipUpBlock2D's operator-precedence group quirk "
            "min(in + skip//4, 32) gives 24 and 32 here; AttnSkip attention GroupNorm is fixed at 32 groups; "
            "conv_norm_out and the mid block use min(C//4,32)), norm_eps 1e-6, attention_head_dim null, "
            "layers_per_block 1, block_out_channels [32,32,16], batch 2, sigmas 0.5 and 3.0 (float32); "
            "deprecated attention key names; float32 reference."
        ),
    ),
    Case(
        name="resnet_updown_scaleshift",
        model_class="UNet2DModel",
        seed=1004,
        config=dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=[16, 16, 16],
            down_block_types=["ResnetDownsampleBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D"],
            up_block_types=["ResnetUpsampleBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"],
            layers_per_block=1,
            downsample_type="resnet",
            upsample_type="resnet",
            resnet_time_scale_shift="scale_shift",
            attn_norm_num_groups=None,
            norm_num_groups=4,
            norm_eps=1e-5,
            act_fn="mish",
            attention_head_dim=8,
            downsample_padding=1,
            flip_sin_to_cos=True,
            freq_shift=1,
        ),
        make_inputs=inputs_resnet_updown_scaleshift,
        description=(
            "IF/unCLIP-style resampling: ResnetDownsampleBlock2D / ResnetUpsampleBlock2D (down=True resnet: "
            "avg-pool inside; up=True resnet: nearest inside) and AttnDownBlock2D/AttnUpBlock2D with "
            "downsample_type/upsample_type \"resnet\"; resnet_time_scale_shift scale_shift (time_emb_proj "
            "outputs 2C: norm2(h)*(1+scale)+shift) and attn_norm_num_groups null => the mid-block attention has "
            "NO GroupNorm (the down/up attention blocks still have one); act_fn mish (also applied to temb "
            "inside the resnets); attention_head_dim 8 => 2 heads; norm_num_groups 4; flip_sin_to_cos true with freq_shift 1; "
            "in/out channels 4; batch 2 with float64 timesteps per item (diffusers casts them to float32 in "
            "the sinusoidal projection)."
        ),
    ),
    Case(
        name="learned_classes_gelu",
        model_class="UNet2DModel",
        seed=1005,
        weights_dtype="F16",
        config=dict(
            sample_size=[16, 32],
            in_channels=3,
            out_channels=3,
            block_out_channels=[16, 24],
            down_block_types=["DownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UpBlock2D"],
            layers_per_block=1,
            time_embedding_type="learned",
            num_train_timesteps=1000,
            num_class_embeds=10,
            act_fn="gelu",
            add_attention=False,
            attention_head_dim=8,
            norm_num_groups=8,
            norm_eps=1e-5,
            dropout=0.1,
        ),
        make_inputs=inputs_learned_classes_gelu,
        description=(
            "time_embedding_type learned (nn.Embedding(num_train_timesteps=1000, 16) indexed by the timestep), "
            "class_embed_type null with num_class_embeds 10 (nn.Embedding lookup of int64 class_labels added to "
            "the time embedding), act_fn gelu (exact erf), add_attention false (mid block = 2 resnets, no "
            "attention), layers_per_block 1, block_out_channels [16,24], attention_head_dim 8 (3 heads in AttnDownBlock2D/AttnUpBlock2D), "
            "final down block is an AttnDownBlock2D (no downsampler), dropout 0.1 in the config (inference: "
            "no-op), non-square 16x32 input, batch 2, int32 timesteps per item; weights stored as F16."
        ),
    ),
    Case(
        name="identity_relu_bf16",
        model_class="UNet2DModel",
        seed=1006,
        weights_dtype="BF16",
        config=dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            block_out_channels=[32, 32],
            down_block_types=["AttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "AttnUpBlock2D"],
            layers_per_block=1,
            class_embed_type="identity",
            act_fn="relu",
            attention_head_dim=8,
            mid_block_scale_factor=2.0,
            norm_num_groups=8,
            attn_norm_num_groups=16,
            norm_eps=1e-5,
            flip_sin_to_cos=True,
            freq_shift=0,
        ),
        make_inputs=inputs_identity_relu_bf16,
        description=(
            "class_embed_type identity (class_labels: float tensor of width 4*block_out_channels[0] = 128 added "
            "to the time embedding as is), act_fn relu, attention_head_dim 8 => 4 heads of dim 8 at 32 channels "
            "(256 tokens at 16x16; 16 tokens in the mid block), mid_block_scale_factor 2.0 (mid resnets' "
            "output_scale_factor and mid attention rescale_output_factor), norm_num_groups 8 with 32 "
            "channels (4 channels per group), attn_norm_num_groups 16 (explicit, mid attention only), AttnDownBlock2D at full "
            "resolution with a conv downsampler, 0-d float32 timestep (37.5), batch 1; weights stored as BF16."
        ),
    ),
    Case(
        name="class_timestep_fp32",
        model_class="UNet2DModel",
        seed=1007,
        reference_dtype="float32",
        reference_dtype_reason=(
            "class_embed_type \"timestep\" feeds the float32 output of time_proj straight into the "
            "class_embedding Linear without a cast, which fails for float64 (and float16) models"
        ),
        config=dict(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            block_out_channels=[16, 16],
            down_block_types=["UNetResDownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UNetResUpBlock2D"],
            layers_per_block=1,
            class_embed_type="timestep",
            attention_head_dim=4,
            norm_num_groups=4,
            norm_eps=1e-5,
            flip_sin_to_cos=False,
            freq_shift=0,
            act_fn="silu",
        ),
        make_inputs=inputs_class_timestep_fp32,
        description=(
            "class_embed_type \"timestep\": float class_labels go through the same sinusoidal time_proj as the "
            "timesteps and then a separate TimestepEmbedding MLP (class_embedding.linear_1/linear_2), summed "
            "with the time embedding; flip_sin_to_cos false with freq_shift 0; attention_head_dim 4 => 4 heads "
            "of dim 4; norm_num_groups 4; legacy block names with the \"UNetRes\" prefix in the config "
            "(UNetResDownBlock2D, UNetResUpBlock2D: diffusers strips the prefix); int64 timesteps per item, "
            "batch 2; float32 reference (diffusers 0.26.3 cannot run this option in float64)."
        ),
    ),
]

# ---- UNet1DModel inputs ----------------------------------------------------------------------------
def inputs_dance_default(gen):
    return {
        "sample": _randn(gen, 2, 2, 512),
        # DanceDiffusionPipeline / IPNDMScheduler style: float timesteps in (0, 1], one per item
        "timestep": torch.tensor([0.35, 1.0], dtype=torch.float32),
    }


MAESTRO_MIN_LENGTH = 3 * 2**13  # 24576: see the maestro_13level description


def inputs_maestro_13level(gen):
    return {
        "sample": _randn(gen, 1, 2, MAESTRO_MIN_LENGTH),
        "timestep": torch.tensor(0.72, dtype=torch.float32),  # 0-d
    }


def inputs_dance_positional_pyfloat(gen):
    return {
        "sample": _randn(gen, 2, 2, 96),
        "timestep": 3.7,  # Python float: diffusers uses torch.tensor([3.7], dtype=torch.long) == [3]
    }


def inputs_fourier_newer_width(gen):
    return {
        "sample": _randn(gen, 2, 2, 200),
        # one timestep of shape (1,) shared by the batch of 2 (broadcast), float64
        "timestep": torch.tensor([0.6180339887498949], dtype=torch.float64),
    }


def inputs_hopper_planner_h32(gen):
    return {
        "sample": _randn(gen, 2, 14, 32),
        "timestep": torch.tensor([3, 17], dtype=torch.int64),
    }


def inputs_hopper_planner_h128(gen):
    return {
        "sample": _randn(gen, 1, 14, 128),
        "timestep": 11,  # Python int: torch.tensor([11], dtype=torch.long)
    }


def inputs_value_function(gen):
    return {
        "sample": _randn(gen, 2, 14, 32),
        "timestep": torch.tensor([0, 13], dtype=torch.int64),
    }


def inputs_planner_layers2(gen):
    return {
        "sample": _randn(gen, 2, 7, 64),
        "timestep": torch.tensor([2.5, 14.75], dtype=torch.float32),  # float tensor: used as is (not truncated)
    }


def patch_time_proj_fourier_width(model: torch.nn.Module, case: "Case") -> None:
    """Emulate diffusers >= 0.36's UNet1DModel Fourier rule: GaussianFourierProjection with
    embedding_size = (time_embedding_dim or 2*block_out_channels[0]) // 2 instead of the hard-coded 8."""
    from diffusers.models.embeddings import GaussianFourierProjection

    dim = case.extra_config.get("time_embedding_dim") or 2 * model.config.block_out_channels[0]
    model.time_proj = GaussianFourierProjection(
        embedding_size=dim // 2, set_W_to_weight=False, log=False, flip_sin_to_cos=model.config.flip_sin_to_cos
    )


UNET1D_RL_REFERENCE_REASON = (
    "with use_timestep_embedding true diffusers 0.26.3 feeds the float32 output of the sinusoidal time_proj "
    "straight into the time_mlp Linear without a cast ('mat1 and mat2 must have the same dtype' for a "
    "float64 model; later diffusers add .to(sample.dtype))"
)

AUDIO_13_DOWN = ["DownBlock1DNoSkip"] + ["DownBlock1D"] * 7 + ["AttnDownBlock1D"] * 5
AUDIO_13_UP = ["AttnUpBlock1D"] * 5 + ["UpBlock1D"] * 7 + ["UpBlock1DNoSkip"]

# ---- UNet1DModel cases ----------------------------------------------------------------------------
UNET1D_CASES: List[Case] = [
    Case(
        name="dance_default",
        model_class="UNet1DModel",
        seed=2001,
        weights_dtype="BF16",
        fourier_scale=1.0,
        # the constructor defaults, except extra_in_channels: its default 0 cannot run (DownBlock1DNoSkip
        # concatenates the 16 Fourier features, the first conv then gets 18 channels instead of 2)
        config=dict(extra_in_channels=16),
        make_inputs=inputs_dance_default,
        description=(
            "The default UNet1DModel config (every constructor argument at its 0.26.3 default except "
            "extra_in_channels 16, without which the default cannot run): Dance Diffusion family, "
            "block_out_channels [32,32,64], in/out 2, DownBlock1DNoSkip/DownBlock1D/AttnDownBlock1D, "
            "UNetMidBlock1D, AttnUpBlock1D/UpBlock1D/UpBlock1DNoSkip, no out block; Fourier time embedding "
            "(GaussianFourierProjection, 8 frequencies => 16 features, log false, flip_sin_to_cos true => cos "
            "first; weights ~ randn like a real checkpoint) broadcast along the length and concatenated to the "
            "input (use_timestep_embedding false); 64 channels => 2 attention heads of dim 32 in the "
            "AttnDown/AttnUp/mid blocks; cubic Downsample1d/Upsample1d with reflect padding (kernel buffers hold "
            "the true fixed kernel); sample_size 65536 in the config (no effect); length 512, batch 2, float32 "
            "timesteps 0.35 and 1.0 (one per item); weights stored as BF16."
        ),
    ),
    Case(
        name="maestro_13level",
        model_class="UNet1DModel",
        seed=2002,
        weights_dtype="F16",
        fourier_scale=1.0,
        config=dict(
            sample_size=65536,
            sample_rate=16000,
            in_channels=2,
            out_channels=2,
            extra_in_channels=16,
            time_embedding_type="fourier",
            flip_sin_to_cos=True,
            use_timestep_embedding=False,
            freq_shift=0.0,
            down_block_types=AUDIO_13_DOWN,
            up_block_types=AUDIO_13_UP,
            mid_block_type="UNetMidBlock1D",
            out_block_type=None,
            block_out_channels=[8, 8, 8, 8, 8, 8, 8, 32, 32, 32, 32, 32, 32],
            act_fn=None,
            norm_num_groups=8,
            layers_per_block=1,
            downsample_each_block=False,
        ),
        make_inputs=inputs_maestro_13level,
        meta_extra={
            "length_rule": (
                "L must be k * 2**13 with k >= 3 (13 halvings: 7 DownBlock1D + 5 AttnDownBlock1D + the "
                "UNetMidBlock1D; every level must halve exactly for the skip concatenations and the mid block's "
                "down/up round trip; the innermost length k feeds Upsample1d's reflect pad of 2, which torch only "
                "allows when k > 2; the downsample into it pads 3 on 2k, fine). 16384 (k=2) fails with "
                "'Padding size should be less than the corresponding input dimension ... padding (2, 2) ... "
                "[1, 32, 2]', 8192 fails at the mid block's reflect pad (3, 3) on length 2; lengths that are not "
                "multiples of 8192 fail at a skip torch.cat. Minimum: 24576."
            ),
        },
        description=(
            "harmonai/maestro-150k 13-level layout at reduced width: DownBlock1DNoSkip + 7x DownBlock1D + 5x "
            "AttnDownBlock1D, UNetMidBlock1D, 5x AttnUpBlock1D + 7x UpBlock1D + UpBlock1DNoSkip, "
            "block_out_channels [8]*7 + [32]*6 (real: [128,128,256,256,512x9]; attention "
            "needs >= 32 channels (heads = C // 32 = 1 here) at levels 7..12: AttnUpBlock1D #4 outputs level 7's "
            "width), in/out 2, extra_in_channels 16, Fourier (flip_sin_to_cos true), sample_rate 16000, "
            "sample_size 65536 in the config; length 24576 = 3 * 2**13, the shortest diffusers can run for this "
            "layout (13 halvings; the innermost length must exceed Upsample1d's reflect pad of 2: see length_rule "
            "in meta.json), batch 1, 0-d float32 timestep 0.72; weights stored as F16."
        ),
    ),
    Case(
        name="dance_positional_pyfloat",
        model_class="UNet1DModel",
        seed=2003,
        weights_dtype="F16",
        config=dict(
            sample_size=96,
            in_channels=2,
            out_channels=2,
            extra_in_channels=12,
            time_embedding_type="positional",
            flip_sin_to_cos=False,
            use_timestep_embedding=False,
            freq_shift=1,
            down_block_types=["DownBlock1DNoSkip", "AttnDownBlock1D"],
            up_block_types=["UpBlock1D", "UpBlock1DNoSkip"],
            mid_block_type="UNetMidBlock1D",
            block_out_channels=[12, 32],
        ),
        make_inputs=inputs_dance_positional_pyfloat,
        description=(
            "Audio blocks with the positional time embedding: time_proj = Timesteps(block_out_channels[0] = 12, "
            "flip_sin_to_cos false (sin first), downscale_freq_shift 1) => 12 features, broadcast along the "
            "length and concatenated to the input, so extra_in_channels = 12; two levels: DownBlock1DNoSkip (12) "
            "+ AttnDownBlock1D (32, 1 head), UNetMidBlock1D (32), UpBlock1D (32 -> 12, mid channels 32) + "
            "UpBlock1DNoSkip (12 -> 2); length 96, batch 2 sharing ONE timestep given as the Python float 3.7: "
            "diffusers makes it torch.tensor([3.7], dtype=torch.long) = [3] (truncation), then broadcasts the "
            "(1, 12, L) embedding to the batch. Stored as a 0-d F64 tensor 3.7 with safetensors metadata "
            "python_scalars=timestep; float64 reference (the sinusoid itself is computed in float32, then cast); "
            "weights stored as F16."
        ),
    ),
    Case(
        name="fourier_newer_width",
        model_class="UNet1DModel",
        seed=2004,
        fourier_scale=1.0,
        config=dict(
            sample_size=200,
            in_channels=2,
            out_channels=2,
            extra_in_channels=32,
            time_embedding_type="fourier",
            flip_sin_to_cos=False,
            use_timestep_embedding=False,
            down_block_types=["DownBlock1DNoSkip", "DownBlock1D"],
            up_block_types=["UpBlock1D", "UpBlock1DNoSkip"],
            mid_block_type="UNetMidBlock1D",
            block_out_channels=[8, 32],
        ),
        make_inputs=inputs_fourier_newer_width,
        extra_config={"time_embedding_dim": 32},
        model_patch=patch_time_proj_fourier_width,
        patched_keys=("time_proj.weight",),
        meta_extra={
            "emulates": (
                "diffusers >= 0.36 UNet1DModel Fourier rule: time_proj = GaussianFourierProjection(embedding_size="
                "(time_embedding_dim or 2*block_out_channels[0]) // 2 = 16, set_W_to_weight=False, log=False, "
                "flip_sin_to_cos=config.flip_sin_to_cos); built as a 0.26.3 model (which hard-codes 8) with "
                "time_proj replaced. Detect the rule from time_proj.weight's width (16 here, 8 under the 0.26.3 "
                "rule). Plain 0.26.3 from_pretrained cannot load this folder (time_proj.weight shape mismatch)."
            ),
        },
        description=(
            "Emulates the diffusers >= 0.36 Fourier width rule, which 0.26.3 cannot build itself: config.json "
            "carries time_embedding_dim 32 (written by this script; 0.26.3 ignores the key) and time_proj is "
            "GaussianFourierProjection(embedding_size=16, log false, flip_sin_to_cos false => sin first), so "
            "time_proj.weight has shape [16] and the embedding 32 features (extra_in_channels 32). Two levels: "
            "DownBlock1DNoSkip (8) + DownBlock1D (32), UNetMidBlock1D (32, 1 head), UpBlock1D (32 -> 8) + "
            "UpBlock1DNoSkip (8 -> 2); no attention outside the mid block; length 200 (not a power of two), "
            "batch 2 sharing a timestep of shape (1,) (float64 0.6180339887498949), broadcast to the batch; "
            "weights F32."
        ),
    ),
    Case(
        name="hopper_planner_h32",
        model_class="UNet1DModel",
        seed=2005,
        reference_dtype="float32",
        reference_dtype_reason=UNET1D_RL_REFERENCE_REASON,
        config=dict(
            sample_size=65536,
            in_channels=14,
            out_channels=14,
            extra_in_channels=0,
            time_embedding_type="positional",
            flip_sin_to_cos=False,
            use_timestep_embedding=True,
            freq_shift=1,
            down_block_types=["DownResnetBlock1D"] * 4,
            up_block_types=["UpResnetBlock1D"] * 3,
            mid_block_type="MidResTemporalBlock1D",
            out_block_type="OutConv1DBlock",
            block_out_channels=[16, 16, 24, 32],
            act_fn="mish",
            norm_num_groups=8,
            layers_per_block=1,
            downsample_each_block=False,
        ),
        make_inputs=inputs_hopper_planner_h32,
        description=(
            "bglick13/hopper-medium-v2-value-function-hor32 unet/ (Diffuser planner) layout at reduced width: "
            "in/out 14, 4x DownResnetBlock1D (each 2 ResidualTemporalBlock1D: Conv1dBlock = conv k5 -> "
            "GroupNorm(8, hard-coded) -> mish; temb: mish -> Linear, added after the first Conv1dBlock; skip "
            "taken before the conv k3 s2 p1 downsample; the last down block does not downsample), "
            "MidResTemporalBlock1D (2 resnets), 3x UpResnetBlock1D (all three upsample with ConvTranspose1d "
            "k4 s2 p1: fewer up blocks than down blocks), OutConv1DBlock (conv k5 -> GroupNorm(norm_num_groups "
            "8) -> mish -> conv k1); block_out_channels [16,16,24,32] (real: [32,64,128,256]; multiples of 8 "
            "for the GroupNorms); positional time embedding Timesteps(16, flip_sin_to_cos false, freq_shift 1) "
            "-> TimestepEmbedding(16 -> 64 -> 16, mish); layers_per_block 1; horizon 32, batch 2, int64 "
            "timesteps 3 and 17; weights F32; float32 reference."
        ),
    ),
    Case(
        name="hopper_planner_h128",
        model_class="UNet1DModel",
        seed=2006,
        reference_dtype="float32",
        reference_dtype_reason=UNET1D_RL_REFERENCE_REASON,
        config=dict(
            sample_size=65536,
            in_channels=14,
            out_channels=14,
            extra_in_channels=0,
            time_embedding_type="positional",
            flip_sin_to_cos=False,
            use_timestep_embedding=True,
            freq_shift=1,
            down_block_types=["DownResnetBlock1D"] * 3,
            up_block_types=["UpResnetBlock1D"] * 2,
            mid_block_type="MidResTemporalBlock1D",
            out_block_type="OutConv1DBlock",
            block_out_channels=[8, 16, 32],
            act_fn="mish",
            norm_num_groups=8,
            layers_per_block=1,
            downsample_each_block=False,
        ),
        make_inputs=inputs_hopper_planner_h128,
        description=(
            "The hor128 planner variant (3 down blocks, 2 up blocks; real block_out_channels [32,128,256], here "
            "[8,16,32]: block_out_channels[0] = 8 puts ONE channel in each of the 8 GroupNorm groups of the first "
            "down block and of OutConv1DBlock, and gives an 8-wide sinusoid (4 frequencies, divided by 4 - 1 = 3) "
            "and time embedding): horizon 128 -> 64 -> 32 (third down block does not downsample) -> mid -> 64 -> "
            "128, OutConv1DBlock, positional (flip false, shift 1) + mish time MLP; batch 1, timestep given as the "
            "Python int 11 (diffusers: torch.tensor([11], dtype=torch.long)); stored as a 0-d I64 tensor with "
            "safetensors metadata python_scalars=timestep; weights F32; float32 reference."
        ),
    ),
    Case(
        name="value_function",
        model_class="UNet1DModel",
        seed=2007,
        reference_dtype="float32",
        reference_dtype_reason=UNET1D_RL_REFERENCE_REASON,
        config=dict(
            sample_size=65536,
            in_channels=14,
            out_channels=14,
            extra_in_channels=0,
            time_embedding_type="positional",
            flip_sin_to_cos=False,
            use_timestep_embedding=True,
            freq_shift=1,
            down_block_types=["DownResnetBlock1D"] * 4,
            up_block_types=[],
            mid_block_type="ValueFunctionMidBlock1D",
            out_block_type="ValueFunction",
            block_out_channels=[16, 24, 32, 32],
            act_fn="mish",
            norm_num_groups=8,
            layers_per_block=1,
            downsample_each_block=True,
        ),
        make_inputs=inputs_value_function,
        description=(
            "The value_function/ layout (Diffuser value guide) at reduced width: 4x DownResnetBlock1D, "
            "downsample_each_block true (all four downsample: 32 -> 16 -> 8 -> 4 -> 2), no up blocks "
            "(up_block_types []), ValueFunctionMidBlock1D (ResidualTemporalBlock1D 32 -> 16, conv k3 s2 p1 "
            "downsample -> 1, ResidualTemporalBlock1D 16 -> 8, downsample at length 1 -> 1), "
            "OutValueFunctionBlock (fc_dim = 32 // 4 = 8: flatten (B, 8*1), concatenate the (B, 16) time "
            "embedding, Linear 24 -> 4, mish, Linear 4 -> 1); block_out_channels [16,24,32,32] (real "
            "[32,64,128,256]; the last must be a multiple of 32: GroupNorm(8) at C/4, and the horizon must reach "
            "length 1 so that the flattened width equals fc_dim); horizon 32, batch 2, int64 timesteps 0 and 13 "
            "(one per item: "
            "a single timestep with batch 2 fails in diffusers at the torch.cat of the out block); output shape "
            "(B, 1); weights F32; float32 reference."
        ),
    ),
    Case(
        name="planner_layers2",
        model_class="UNet1DModel",
        seed=2008,
        weights_dtype="F16",
        reference_dtype="float32",
        reference_dtype_reason=UNET1D_RL_REFERENCE_REASON,
        config=dict(
            sample_size=64,
            in_channels=7,
            out_channels=5,
            extra_in_channels=0,
            time_embedding_type="positional",
            flip_sin_to_cos=True,
            use_timestep_embedding=True,
            freq_shift=0,
            down_block_types=["DownResnetBlock1D"] * 3,
            up_block_types=["UpResnetBlock1D"] * 2,
            mid_block_type="MidResTemporalBlock1D",
            out_block_type="OutConv1DBlock",
            block_out_channels=[16, 16, 24],
            act_fn="mish",
            norm_num_groups=4,
            layers_per_block=2,
            downsample_each_block=False,
        ),
        make_inputs=inputs_planner_layers2,
        description=(
            "RL planner with layers_per_block 2 (3 ResidualTemporalBlock1D per down/up block and in the "
            "MidResTemporalBlock1D), in 7 / out 5 channels (OutConv1DBlock maps 16 -> 5), norm_num_groups 4 "
            "(only the OutConv1DBlock GroupNorm; the Conv1dBlock GroupNorms stay at 8), positional with "
            "flip_sin_to_cos true (cos first) and freq_shift 0, block_out_channels [16,16,24]; horizon 64, "
            "batch 2, float32 timesteps 2.5 and 14.75 (a float tensor is used as is, not truncated); weights "
            "stored as F16; float32 reference."
        ),
    ),
]

FAMILIES: Dict[str, List[Case]] = {
    "unet2d": UNET2D_CASES,
    "unet1d": UNET1D_CASES,
    # later: "unet2d_condition": ..., "unet3d_condition": ..., "unet_motion": ...
}
for _family, _cases in FAMILIES.items():
    for _case in _cases:
        _case.family = _family


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------
def _avoid_tiny(t: torch.Tensor) -> torch.Tensor:
    """Push elements with |x| < MIN_ABS_WEIGHT away from zero (keeps sign; zero -> +MIN_ABS_WEIGHT)."""
    tiny = t.abs() < MIN_ABS_WEIGHT
    if tiny.any():
        repl = torch.where(t < 0, torch.full_like(t, -MIN_ABS_WEIGHT), torch.full_like(t, MIN_ABS_WEIGHT))
        t = torch.where(tiny, repl, t)
    return t


def _fan_in_uniform(shape, gen) -> torch.Tensor:
    tmp = torch.empty(shape)
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(tmp)
    return (torch.rand(shape, generator=gen) * 2 - 1) * math.sqrt(3.0 / max(fan_in, 1))


def _random_param(module: torch.nn.Module, pname: str, shape, gen, case: Case) -> torch.Tensor:
    from diffusers.models.embeddings import GaussianFourierProjection

    if isinstance(module, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)):
        if pname == "weight":
            return _fan_in_uniform(shape, gen)
        return 0.1 * torch.randn(shape, generator=gen)
    if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
        if pname == "weight":
            return 1.0 + 0.2 * torch.randn(shape, generator=gen)
        return 0.2 * torch.randn(shape, generator=gen)
    if isinstance(module, torch.nn.Embedding):
        return torch.randn(shape, generator=gen)
    if isinstance(module, GaussianFourierProjection):
        # diffusers initialises it as randn * scale (scale 16 in UNet2DModel); keep that magnitude
        return torch.randn(shape, generator=gen) * case.fourier_scale
    # unknown parameter kinds (future families): matrices fan-in scaled, vectors small
    if len(shape) >= 2:
        return _fan_in_uniform(shape, gen)
    return 0.1 * torch.randn(shape, generator=gen)


def _fixed_buffer_module_types() -> tuple:
    """Modules whose buffers are fixed tables that real checkpoints store verbatim: kept, not randomised."""
    from diffusers.models.unets import unet_1d_blocks

    return (unet_1d_blocks.Downsample1d, unet_1d_blocks.Upsample1d)


def fixed_buffer_names(model: torch.nn.Module) -> List[str]:
    fixed_types = _fixed_buffer_module_types()
    names = []
    for mname, module in model.named_modules():
        if isinstance(module, fixed_types):
            names += [f"{mname}.{bname}" for bname, b in module.named_buffers(recurse=False) if b is not None]
    return names


def randomize_weights_(model: torch.nn.Module, case: Case) -> None:
    """Overwrite every parameter and every persistent floating buffer with non-zero random values
    (except the buffers of _fixed_buffer_module_types(), which keep their true values)."""
    gen = torch.Generator().manual_seed(case.seed * 7919 + 17)
    seen = set()
    fixed_types = _fixed_buffer_module_types()
    with torch.no_grad():
        for mname, module in model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                if id(p) in seen:  # aliases (e.g. GaussianFourierProjection .W is .weight)
                    continue
                seen.add(id(p))
                val = _random_param(module, pname, tuple(p.shape), gen, case)
                p.copy_(_avoid_tiny(val).to(p.dtype))
            if isinstance(module, fixed_types):
                continue  # no parameters; its buffers are the fixed resampling kernel
            non_persistent = getattr(module, "_non_persistent_buffers_set", set())
            for bname, b in module.named_buffers(recurse=False):
                if b is None or bname in non_persistent or not b.is_floating_point():
                    continue
                # keep the structure of fixed tables (kernels, positional tables) but make them non-zero
                val = b.float() + 0.05 * torch.randn(tuple(b.shape), generator=gen)
                b.copy_(_avoid_tiny(val).to(b.dtype))
    n_params = len(list(model.parameters()))
    if len(seen) != n_params:
        raise RuntimeError(f"{case.name}: randomized {len(seen)} parameters, model has {n_params}")


def round_weights_(model: torch.nn.Module, storage_dtype: torch.dtype) -> None:
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(storage_dtype).to(t.dtype))


def dedup_state_dict(state_dict: Dict[str, torch.Tensor]):
    """Drop aliases (several names for one tensor, e.g. GaussianFourierProjection `W` and `weight`):
    keep the first name in state_dict order. diffusers 0.26.3's save_pretrained hands both names to
    safetensors, which refuses shared tensors; later diffusers registers only `weight`."""
    kept: Dict[str, torch.Tensor] = {}
    aliases: Dict[str, str] = {}
    by_storage: Dict[tuple, str] = {}
    for k, v in state_dict.items():
        key = (v.data_ptr(), v.dtype, tuple(v.shape), tuple(v.stride()))
        if v.numel() > 0 and key in by_storage:
            aliases[k] = by_storage[key]
            continue
        by_storage[key] = k
        kept[k] = v
    return kept, aliases


def deprecated_attention_paths(model: torch.nn.Module) -> List[str]:
    return [
        name
        for name, module in model.named_modules()
        if getattr(module, "_from_deprecated_attn_block", False)
    ]


def rename_to_deprecated(state_dict: Dict[str, torch.Tensor], paths: List[str]) -> Dict[str, torch.Tensor]:
    out = {}
    n_renamed = 0
    for k, v in state_dict.items():
        new_k = k
        for p in paths:
            if k.startswith(p + "."):
                rest = k[len(p) :]
                for new, old in DEPRECATED_ATTN_RENAMES:
                    if rest.startswith(new):
                        new_k = p + old + rest[len(new) :]
                        n_renamed += 1
                        break
                break
        out[new_k] = v
    if n_renamed != 8 * len(paths):
        raise RuntimeError(f"expected {8 * len(paths)} renamed attention keys, renamed {n_renamed}")
    return out


def rename_from_deprecated(state_dict: Dict[str, torch.Tensor], paths: List[str]) -> Dict[str, torch.Tensor]:
    """Inverse of rename_to_deprecated (used to build the reference model from the stored file)."""
    out = {}
    for k, v in state_dict.items():
        new_k = k
        for p in paths:
            if k.startswith(p + "."):
                rest = k[len(p) :]
                for new, old in DEPRECATED_ATTN_RENAMES:
                    if rest.startswith(old):
                        new_k = p + new + rest[len(old) :]
                        break
                break
        out[new_k] = v
    return out


def assert_no_zero_weights(state_dict: Dict[str, torch.Tensor], what: str) -> None:
    for k, v in state_dict.items():
        if v.is_floating_point() and (v == 0).any():
            raise RuntimeError(f"{what}: weight {k} has exact zeros")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise RuntimeError(f"{what}: weight {k} is not finite")


# --------------------------------------------------------------------------------------------------
# Fixture generation
# --------------------------------------------------------------------------------------------------
def _is_python_number(v) -> bool:
    if isinstance(v, bool):
        raise TypeError("bool forward() arguments are not supported")
    return isinstance(v, (int, float))


def _to_reference(inputs: Dict[str, Any], ref_dtype: torch.dtype) -> Dict[str, Any]:
    """Floating tensors cast to the reference dtype, integer tensors copied, Python numbers passed as is."""
    return {
        k: (v if _is_python_number(v) else v.to(ref_dtype) if v.is_floating_point() else v.clone())
        for k, v in inputs.items()
    }


def _stored_inputs(inputs: Dict[str, Any]):
    """Tensors to write (Python numbers as 0-d F64/I64 tensors) and the names of the Python-number arguments."""
    stored: Dict[str, torch.Tensor] = {}
    python_scalars: List[str] = []
    for k, v in inputs.items():
        if _is_python_number(v):
            python_scalars.append(k)
            stored[k] = torch.tensor(v, dtype=torch.float64 if isinstance(v, float) else torch.int64)
        else:
            stored[k] = v.contiguous()
    return stored, python_scalars


def _run(model, inputs):
    with torch.no_grad():
        return model(**inputs, return_dict=True).sample


def _tensor_info(t: torch.Tensor) -> dict:
    return {"dtype": SAFETENSORS_DTYPE_NAMES[t.dtype], "shape": list(t.shape)}


def make_case(case: Case, out_root: str) -> dict:
    model_cls = getattr(diffusers, case.model_class)
    storage_dtype = STORAGE_DTYPES[case.weights_dtype]
    ref_dtype = REFERENCE_DTYPES[case.reference_dtype]
    folder = os.path.join(out_root, case.family, case.name)

    # 1. build with a fixed seed, overwrite every weight, round to the storage dtype
    torch.manual_seed(case.seed)
    model = model_cls(**case.config)
    if case.model_patch is not None:
        case.model_patch(model, case)
    model.eval()
    fixed_buffers = fixed_buffer_names(model)
    fixed_values = {k: v.detach().clone() for k, v in model.state_dict().items() if k in fixed_buffers}
    randomize_weights_(model, case)
    round_weights_(model, storage_dtype)

    # 2. the state dict as written (aliases dropped, storage dtype, optional deprecated names)
    full_sd = model.state_dict()
    sd, aliases = dedup_state_dict(full_sd)
    sd = {k: v.detach().to(storage_dtype).contiguous().clone() for k, v in sd.items()}
    assert_no_zero_weights(sd, case.name)
    for k, v in fixed_values.items():  # the fixed kernels must survive the storage dtype exactly
        if not torch.equal(sd[k].to(v.dtype), v):
            raise RuntimeError(f"{case.name}: fixed buffer {k} is not exact in {case.weights_dtype}")
    file_sd = sd
    attn_paths = deprecated_attention_paths(model)
    if case.deprecated_attention_names:
        if not attn_paths:
            raise RuntimeError(f"{case.name}: deprecated attention names requested but no such blocks")
        file_sd = rename_to_deprecated(sd, attn_paths)

    tmp = os.path.join(out_root, case.family, f".{case.name}.tmp{os.getpid()}")
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        model.save_config(tmp)  # what save_pretrained writes as config.json
        if case.extra_config:
            # keys 0.26.3 does not know: merged in diffusers' own format (indent 2, sorted keys)
            config_path = os.path.join(tmp, "config.json")
            with open(config_path) as f:
                written = json.load(f)
            clash = set(written) & set(case.extra_config)
            if clash:
                raise RuntimeError(f"{case.name}: extra_config keys already in config.json: {sorted(clash)}")
            written.update(case.extra_config)
            with open(config_path, "w", encoding="utf-8") as f:
                f.write(json.dumps(written, indent=2, sort_keys=True) + "\n")
        weights_path = os.path.join(tmp, "diffusion_pytorch_model.safetensors")
        safetensors.torch.save_file(file_sd, weights_path, metadata={"format": "pt"})

        # 3. reference model built from exactly the stored values
        stored = safetensors.torch.load_file(weights_path)
        for k, v in stored.items():
            if v.dtype != storage_dtype:
                raise RuntimeError(f"{case.name}: stored {k} as {v.dtype}, wanted {storage_dtype}")
        if case.deprecated_attention_names:
            if any(".to_q." in k or ".to_out.0." in k for k in stored if any(k.startswith(p + ".") for p in attn_paths)):
                raise RuntimeError(f"{case.name}: new-style attention names left in the file")
            stored = rename_from_deprecated(stored, attn_paths)
        torch.manual_seed(case.seed)
        ref_model = model_cls.from_config(model.config)
        if case.model_patch is not None:
            case.model_patch(ref_model, case)
        missing, unexpected = ref_model.load_state_dict(stored, strict=False)
        if unexpected or set(missing) - set(aliases):
            raise RuntimeError(f"{case.name}: load mismatch: missing {missing}, unexpected {unexpected}")
        ref_model = ref_model.to(ref_dtype).eval()

        inputs = case.make_inputs(torch.Generator().manual_seed(case.seed * 31 + 5))
        if inputs["sample"].dtype != torch.float32:
            raise RuntimeError("sample must be stored as F32")
        stored_inputs, python_scalars = _stored_inputs(inputs)
        ref_inputs = _to_reference(inputs, ref_dtype)
        out = _run(ref_model, ref_inputs)
        if out.dtype != ref_dtype:
            raise RuntimeError(f"{case.name}: output dtype {out.dtype}, expected {ref_dtype}")
        if not torch.isfinite(out).all():
            raise RuntimeError(f"{case.name}: non-finite reference output")
        if python_scalars:
            # sanity check of the documented convention: a Python number t acts as torch.tensor([t], long)
            as_long = dict(ref_inputs)
            for k in python_scalars:
                as_long[k] = torch.tensor([inputs[k]], dtype=torch.long)
            if not torch.equal(out, _run(ref_model, as_long)):
                raise RuntimeError(f"{case.name}: Python-number argument does not act as torch.tensor([t], long)")

        # 4. the folder must load with diffusers' own from_pretrained and give the identical output
        if case.model_patch is None:
            loaded, info = model_cls.from_pretrained(tmp, output_loading_info=True)
            bad_mismatched = info["mismatched_keys"]
        else:
            # 0.26.3 builds the unpatched layer: only the patched keys may mismatch; patch, then load them
            loaded, info = model_cls.from_pretrained(
                tmp, output_loading_info=True, ignore_mismatched_sizes=True, low_cpu_mem_usage=False
            )
            got = sorted(m[0] for m in info["mismatched_keys"])
            bad_mismatched = [] if got == sorted(case.patched_keys) else info["mismatched_keys"]
            case.model_patch(loaded, case)
            file_sd = safetensors.torch.load_file(weights_path)
            loaded.load_state_dict({k: file_sd[k] for k in case.patched_keys}, strict=False)
        bad_missing = set(info["missing_keys"]) - set(aliases)
        if bad_missing or info["unexpected_keys"] or bad_mismatched or info["error_msgs"]:
            raise RuntimeError(f"{case.name}: from_pretrained loading problems: {info}")
        loaded = loaded.to(ref_dtype).eval()
        out2 = _run(loaded, _to_reference(inputs, ref_dtype))
        if not torch.equal(out, out2):
            raise RuntimeError(
                f"{case.name}: from_pretrained output differs (max abs diff {(out - out2).abs().max().item()})"
            )

        expected = {"sample": out.to(torch.float64).contiguous()}
        safetensors.torch.save_file(
            stored_inputs,
            os.path.join(tmp, "inputs.safetensors"),
            metadata={"python_scalars": ",".join(python_scalars)} if python_scalars else None,
        )
        safetensors.torch.save_file(expected, os.path.join(tmp, "expected.safetensors"))

        out64 = expected["sample"]
        meta = {
            "family": case.family,
            "case": case.name,
            "model_class": case.model_class,
            "reference_dtype": case.reference_dtype,
            "weights_dtype": case.weights_dtype,
            "deprecated_attention_names": case.deprecated_attention_names,
            "description": case.description,
            "inputs": {k: _tensor_info(v) for k, v in stored_inputs.items()},
            "expected": {"sample": _tensor_info(out64)},
            "output_stats": {
                "std": out64.std().item(),
                "mean_abs": out64.abs().mean().item(),
                "max_abs": out64.abs().max().item(),
            },
            "weight_aliases_not_stored": aliases,
            "num_parameters": sum(v.numel() for v in sd.values()),
            "seed": case.seed,
            "generated_with": {
                "diffusers": diffusers.__version__,
                "torch": torch.__version__,
                "safetensors": getattr(safetensors, "__version__", "?"),
            },
        }
        if case.reference_dtype_reason:
            meta["reference_dtype_reason"] = case.reference_dtype_reason
        if python_scalars:
            meta["python_scalars"] = {
                k: {
                    "python_type": type(inputs[k]).__name__,
                    "value": inputs[k],
                    "stored_as": SAFETENSORS_DTYPE_NAMES[stored_inputs[k].dtype] + " 0-d",
                    "diffusers_uses": f"torch.tensor([{int(inputs[k])}], dtype=torch.long)",
                }
                for k in python_scalars
            }
        if fixed_buffers:
            meta["fixed_buffers_not_randomized"] = fixed_buffers
        if case.extra_config:
            meta["extra_config_keys"] = case.extra_config
        meta.update(case.meta_extra)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")

        umask = os.umask(0)
        os.umask(umask)
        for fn in os.listdir(tmp):  # safetensors writes 0600 files; use ordinary permissions
            os.chmod(os.path.join(tmp, fn), 0o666 & ~umask)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)

    sizes = {fn: os.path.getsize(os.path.join(folder, fn)) for fn in sorted(os.listdir(folder))}
    print(
        f"  {case.family}/{case.name}: out {list(out64.shape)} std {meta['output_stats']['std']:.4f} "
        f"max|x| {meta['output_stats']['max_abs']:.3f}; {meta['num_parameters']} params "
        f"({case.weights_dtype}); {sum(sizes.values()) / 1024:.1f} KiB"
    )
    return meta


def _fmt_inputs(case: Case) -> str:
    inputs = case.make_inputs(torch.Generator().manual_seed(0))
    parts = []
    for k, v in inputs.items():
        if _is_python_number(v):
            stored = "F64" if isinstance(v, float) else "I64"
            parts.append(f"`{k}` Python {type(v).__name__} {v!r} (stored {stored} 0-d, python_scalars)")
        else:
            parts.append(f"`{k}` {SAFETENSORS_DTYPE_NAMES[v.dtype]} {tuple(v.shape) if v.dim() else '0-d'}")
    return ", ".join(parts)


# extra README paragraphs per family (appended after the common header)
FAMILY_README_NOTES: Dict[str, List[str]] = {
    "unet1d": [
        "UNet1DModel specifics:",
        "",
        "- Python-number timesteps: diffusers turns a Python int/float `timestep` into "
        "`torch.tensor([t], dtype=torch.long)` (a float is truncated: 3.7 -> 3). Such an argument is stored as "
        "a 0-d tensor (F64 for a float, I64 for an int) and its name is listed in the safetensors metadata of "
        "`inputs.safetensors`: `{\"python_scalars\": \"timestep\"}` (comma-separated names; absent when "
        "none). A 0-d or 1-d tensor timestep is used as is (floats not truncated). meta.json repeats this "
        "under `python_scalars`.",
        "- The `kernel` buffers of the cubic `Downsample1d`/`Upsample1d` (audio blocks) are stored with their "
        "true fixed values (real checkpoints hold exactly these), all other weights are random.",
        "- float32 reference for the RL cases (use_timestep_embedding true): 0.26.3 cannot run them in float64. "
        "The float64 audio cases still compute the positional sinusoid in float32 (then cast); the Fourier "
        "projection and SelfAttention1d run in float64.",
        "- `fourier_newer_width` emulates diffusers >= 0.36 (config key `time_embedding_dim`, `time_proj.weight` "
        "of width 16 instead of 0.26.3's hard-coded 8); diffusers 0.26.3's own from_pretrained cannot load it. "
        "Detect the rule from the width of `time_proj.weight`.",
        "- Length rule of the audio layouts: L = k * 2**n, k >= 3, where n = number of DownBlock1D + "
        "AttnDownBlock1D + 1 (the UNetMidBlock1D), e.g. 24576 for the 13-level maestro layout.",
        "- Observed in 0.26.3 (no fixture): MidResTemporalBlock1D with downsample_each_block true fails on the "
        "first forward (`TypeError: cannot assign 'torch.FloatTensor' as child module 'downsample'`); the "
        "value-function model with batch 2 and a single timestep fails at the out block's torch.cat.",
        "",
    ],
}


def write_family_readme(family: str, cases: List[Case], out_root: str) -> None:
    fam_dir = os.path.join(out_root, family)
    lines = [
        f"# `{family}` reference fixtures",
        "",
        "Generated by `tools/make_fixtures.py` (do not edit by hand; rerun the script) from the real "
        f"diffusers {EXPECTED_DIFFUSERS_VERSION} `{cases[0].model_class}` with random non-zero weights.",
        "",
        "Each folder holds `config.json` (as diffusers writes it), `diffusion_pytorch_model.safetensors` "
        "(weights in the case's storage dtype), `inputs.safetensors` (forward() arguments by name: `sample`, "
        "`timestep`, `class_labels` when used), `expected.safetensors` (`sample`: diffusers' output, F64) and "
        "`meta.json`.",
        "",
        "Reference: `reference_dtype` float64 means the model ran with `.double()`; diffusers still computes "
        "the sinusoidal timestep projection and the (upcast) attention softmax in float32. float32 means "
        "diffusers cannot run that configuration in float64 (see `reference_dtype_reason` in meta.json); "
        "compare those with a float32-level tolerance.",
        "Weights stored as F16/BF16 are exactly the values the reference used (rounded first, then run in "
        "the reference dtype).",
        "`time_proj.W` (GaussianFourierProjection alias of `time_proj.weight`) is not stored: only "
        "`time_proj.weight`. Old `.bin` checkpoints may carry both names.",
        "Cases with deprecated attention names store the deprecated attention blocks' projections as "
        "`query`/`key`/`value`/`proj_attn` (old google checkpoints) instead of `to_q`/`to_k`/`to_v`/`to_out.0`.",
        "",
    ]
    lines += FAMILY_README_NOTES.get(family, [])
    lines += [
        "| case | weights | reference | deprecated attn names | inputs |",
        "|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(
            f"| `{c.name}` | {c.weights_dtype} | {c.reference_dtype} | "
            f"{'yes' if c.deprecated_attention_names else 'no'} | {_fmt_inputs(c)} |"
        )
    lines.append("")
    for c in cases:
        lines += [f"## `{c.name}`", "", c.description, ""]
        if c.reference_dtype_reason:
            lines += [f"float32 reference because {c.reference_dtype_reason}.", ""]
        lines += ["```json", json.dumps({**c.config, **c.extra_config}, indent=None), "```", ""]
    with open(os.path.join(fam_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    return total


def main(argv=None) -> int:
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(repo_root, "tests", "data"), help="output root (default: tests/data)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="case or family names to (re)generate")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)

    all_cases = [c for cases in FAMILIES.values() for c in cases]
    if args.list:
        for c in all_cases:
            print(f"{c.family}/{c.name}  [{c.model_class}, weights {c.weights_dtype}, reference {c.reference_dtype}"
                  f"{', deprecated attn names' if c.deprecated_attention_names else ''}]")
            print(f"    {c.description}")
        return 0

    if diffusers.__version__ != EXPECTED_DIFFUSERS_VERSION:
        sys.exit(f"diffusers {diffusers.__version__} found; the fixtures must come from {EXPECTED_DIFFUSERS_VERSION}")

    selected = all_cases
    if args.only:
        names = set(args.only)
        unknown = names - {c.name for c in all_cases} - set(FAMILIES)
        if unknown:
            sys.exit(f"unknown case/family: {sorted(unknown)} (see --list)")
        selected = [c for c in all_cases if c.name in names or c.family in names]

    blas = loaded_blas()
    netlib = tuple(_netlib_dirs())
    if not os.environ.get(_ANY_BLAS_ENV) and (not blas or any(not p.startswith(netlib) for p in blas)):
        sys.exit(
            f"torch is not using the netlib reference BLAS ({blas or 'none found'}); the fixtures are made with "
            f"it (apt-get install libblas3 liblapack3; this script puts {list(netlib)} first on "
            f"LD_LIBRARY_PATH). Set {_ANY_BLAS_ENV}=1 to run anyway (last-bit differences in expected outputs)."
        )

    _diffusers_logging.set_verbosity_error()
    # diffusers' FIR code calls torch.tensor(tensor); harmless, but noisy
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
    install_patches()
    torch.set_num_threads(1)  # fixed reduction order

    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}; writing to {args.out}")
    print(f"BLAS: {', '.join(blas) or 'unknown'}")
    for family, cases in FAMILIES.items():
        fam_cases = [c for c in cases if c in selected]
        if not fam_cases:
            continue
        os.makedirs(os.path.join(args.out, family), exist_ok=True)
        for case in fam_cases:
            make_case(case, args.out)
        write_family_readme(family, cases, args.out)

    print("size summary:")
    grand = 0
    for family, cases in FAMILIES.items():
        fam_dir = os.path.join(args.out, family)
        if not os.path.isdir(fam_dir):
            continue
        for c in cases:
            p = os.path.join(fam_dir, c.name)
            if os.path.isdir(p):
                print(f"  {family}/{c.name}: {dir_size(p) / 1024:.1f} KiB")
        total = dir_size(fam_dir)
        grand += total
        print(f"  {family} total: {total / 1024:.1f} KiB ({total / 1e6:.2f} MB)")
    print(f"all families: {grand / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
