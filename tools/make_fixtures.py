#!/usr/bin/env python3
"""Generate reference fixtures for the C/OpenCL UNet implementation from the REAL diffusers 0.26.3.

Install (Debian):
    apt-get install python3-torch            # torch 1.13 for /usr/bin/python3
    /usr/bin/python3 -m pip install --break-system-packages \\
        diffusers==0.26.3 huggingface_hub==0.20.3 safetensors
    (numpy comes with python3-torch)
This interpreter must NOT see peft + transformers (diffusers 0.26.3 switches every model to its PEFT backend when
both are importable; all cases except `lora_peft` document the non-PEFT path). The `lora_peft` case needs the
PEFT backend and is generated in a second interpreter, named by the environment variable
MAKE_FIXTURES_PEFT_PYTHON, that sees the same torch/diffusers plus peft and transformers, e.g.
    /usr/bin/python3 -m venv --system-site-packages /tmp/peft-venv
    /tmp/peft-venv/bin/python -m pip install --no-deps \\
        peft==0.9.0 transformers==4.38.2 accelerate==0.27.2 tokenizers==0.15.2
    export MAKE_FIXTURES_PEFT_PYTHON=/tmp/peft-venv/bin/python
(--no-deps: peft's requirement torch>=1.13.0 rejects Debian's 1.13.0a0 and pip would pull a new torch into the
venv.) The script runs the PEFT cases in that interpreter (as a child process, same arguments otherwise) and
everything else in its own; run under that interpreter directly, it accepts only PEFT cases.

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
UNet1DModel, "unet2dcond" = UNet2DConditionModel), holding
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
                                      UNet2DConditionModel arguments: `encoder_hidden_states`, `timestep_cond`,
                                      `attention_mask`, `encoder_attention_mask`, and nested arguments
                                      flattened by name: `added_cond_kwargs.text_embeds`, `.time_ids`;
                                      `down_block_additional_residuals.0`, `.1`, ...,
                                      `mid_block_additional_residual`, `down_intrablock_additional_residuals.0`,
                                      .... UNet2DConditionModel does NOT truncate a Python float timestep
                                      (torch.tensor([t], dtype=torch.float64); an int gives int64): same
                                      storage and metadata, meta.json says what diffusers used.
  expected.safetensors                `sample`: diffusers' output, stored as F64.
  meta.json                           family, case, reference_dtype ("float64"/"float32"), weights_dtype,
                                      description (+ some extra informative fields; `python_scalars` when
                                      an argument was a Python number).
  lora*.safetensors                   (LoRA cases) the LoRA file(s) the case loads (see LoraSpec).
  meta.json "apply"                   things that are not forward() arguments, for the C test to replay
                                      through its API before the run: {"freeu": {"s1","s2","b1","b2"}}
                                      (unet.enable_freeu), {"lora": {"file", "format": "diffusers"|"kohya"|
                                      "peft", "scale", "fused"}} (+ "backend": "peft" for the PEFT case)
                                      (scale = cross_attention_kwargs={"scale": s}, or
                                      fuse_lora(lora_scale=s) when fused); "apply_details" is informative.
  meta.json "reference_shim"          (only where present) a documented minimal patch of diffusers that the
                                      case needed to run at all (e.g. dual_cross_attention); math untouched.
A README.md per family (generated) lists the cases and what each covers. A full run (or `--only
unet2dcond_configs`) also writes <out>/unet2dcond_configs/<name>/config.json: published SD/SDXL UNet
configs (no weights), each instantiated with UNet2DConditionModel.from_config to prove diffusers accepts it.

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
FreeU/LoRA ("apply") are applied to the reference model after the cast: LoRA files are loaded the way
pipeline.load_lora_weights does for the UNet (LoraLoaderMixin.lora_state_dict + load_lora_into_unet,
diffusers' non-PEFT path; the PEFT path for `lora_peft`, see above), then fused if the case says so.
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
import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import subprocess
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
    # how diffusers turns a Python-number argument into a tensor: "long" (UNet1DModel/UNet2DModel:
    # torch.tensor([t], dtype=torch.long), floats truncated) or "typed" (UNet2DConditionModel: a float
    # becomes a float64 tensor, an int an int64 tensor)
    python_numbers: str = "long"
    # FreeU factors passed to model.enable_freeu(**freeu) before the reference run (meta.json "apply")
    freeu: Optional[Dict[str, float]] = None
    # LoRA applied before the reference run (meta.json "apply"); see LoraSpec
    lora: Optional["LoraSpec"] = None
    # a context-manager factory wrapped around everything the case does with diffusers (build, reference run,
    # from_pretrained check): a minimal, documented patch without which diffusers 0.26.3 cannot run the
    # configuration at all (math untouched); shim_description goes to meta.json "reference_shim"
    shim: Optional[Callable[[], Any]] = None
    shim_description: str = ""
    family: str = ""  # filled in by FAMILIES registration

    @property
    def needs_peft_backend(self) -> bool:
        return self.lora is not None and self.lora.format == "peft"


@dataclasses.dataclass
class LoraSpec:
    """A random LoRA written next to the model and loaded through diffusers' own (non-PEFT) loaders.

    format: "diffusers" (keys `unet.<module>.lora.down.weight` / `.lora.up.weight`, as the pipelines'
    save_lora_weights writes them; 0.26.3 reads no alphas from such a file) or "kohya" (keys
    `lora_unet_<module with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, converted by diffusers'
    `_convert_kohya_lora_to_diffusers`). The reference loads the file exactly as
    `pipeline.load_lora_weights(folder, weight_name=file)` does for the UNet: `LoraLoaderMixin.lora_state_dict`
    then `LoraLoaderMixin.load_lora_into_unet`. scale: cross_attention_kwargs={"scale": scale} (unfused) or
    unet.fuse_lora(lora_scale=scale) (fused).

    format "peft": keys `unet.<module>.lora_A.weight` / `.lora_B.weight`, written by PEFT itself
    (unet.add_adapter(LoraConfig) -> get_peft_model_state_dict -> LoraLoaderMixin.save_lora_weights, i.e. a
    training script's save path without convert_state_dict_to_diffusers), loaded through diffusers' PEFT
    backend (needs a peft interpreter, see the header). `peft_ranks` gives the rank per layer kind
    (LoraConfig rank_pattern), `peft_lora_alpha` the adapter's lora_alpha at "training" time (NOT in the file)."""

    format: str
    scale: float
    fused: bool = False
    rank: int = 4
    file: str = "lora.safetensors"
    file_dtype: str = "F32"
    seed: int = 0
    with_nomatch: bool = False  # also write lora_nomatch.safetensors (keys that match no layer)
    peft_ranks: Optional[Dict[str, int]] = None  # format "peft": rank per _peft_kind()
    peft_lora_alpha: float = 4.0  # format "peft": LoraConfig.lora_alpha used to create the adapter

    def apply_meta(self) -> Dict[str, Any]:
        """meta.json "apply"."lora" (and the README line)."""
        meta: Dict[str, Any] = {"file": self.file, "format": self.format, "scale": self.scale, "fused": self.fused}
        if self.format == "peft":
            meta["backend"] = "peft"
        return meta


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

# ---- UNet2DConditionModel inputs -----------------------------------------------------------------------
COND_TOKENS = 7  # encoder_hidden_states length of most cases
COND_DIM = 16  # cross_attention_dim of most cases


def _sd_skip_shapes(boc, lpb, h, w):
    """(C, H, W) of every skip a conv-downsampling UNet2DConditionModel keeps (conv_in, each resnet/transformer
    layer, each downsampler: stride-2 conv with padding 1 => ceil(H/2)), and of the mid block output."""
    lpb = lpb if isinstance(lpb, (list, tuple)) else [lpb] * len(boc)
    shapes = [(boc[0], h, w)]
    for i, c in enumerate(boc):
        shapes += [(c, h, w)] * lpb[i]
        if i < len(boc) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            shapes.append((c, h, w))
    return shapes, (boc[-1], h, w)


def _enc(gen, b, length=COND_TOKENS, dim=COND_DIM):
    return _randn(gen, b, length, dim)


def lcm_guidance_embedding(w: torch.Tensor, embedding_dim: int) -> torch.Tensor:
    """diffusers' LatentConsistencyModelPipeline.get_guidance_scale_embedding (float32)."""
    w = w * 1000.0
    half_dim = embedding_dim // 2
    emb = torch.log(torch.tensor(10000.0)) / (half_dim - 1)
    emb = torch.exp(torch.arange(half_dim, dtype=torch.float32) * -emb)
    emb = w.to(torch.float32)[:, None] * emb[None, :]
    return torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)


def inputs_sd15_tiny(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([999, 261], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
    }


def inputs_sd21_linear_upcast(gen):
    return {
        "sample": _randn(gen, 1, 4, 16, 16),
        "timestep": 417.25,  # Python float: UNet2DConditionModel makes torch.tensor([417.25], dtype=float64)
        "encoder_hidden_states": _enc(gen, 1),
    }


def inputs_sdxl_tiny(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor(731.0, dtype=torch.float32),  # 0-d, broadcast to the batch
        "encoder_hidden_states": _enc(gen, 2),
        "added_cond_kwargs": {
            "text_embeds": _randn(gen, 2, 12),
            # [orig_h, orig_w, crop_top, crop_left, target_h, target_w]
            "time_ids": torch.tensor(
                [[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], [768.0, 1344.0, 64.0, 0.0, 1024.0, 1024.0]]
            ),
        },
    }


def inputs_sdxl_refiner_like(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([200, 57], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "added_cond_kwargs": {
            "text_embeds": _randn(gen, 2, 12),
            # refiner: [orig_h, orig_w, crop_top, crop_left, aesthetic_score]
            "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 6.0], [512.0, 768.0, 16.0, 8.0, 2.5]]),
        },
    }


def inputs_lcm_timestep_cond(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([999, 759], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        # the LCM pipeline's w-embedding of guidance_scale - 1 (8.5 and 3.0)
        "timestep_cond": lcm_guidance_embedding(torch.tensor([7.5, 2.0]), 16),
    }


SD_TINY_BOC = [8, 8, 16]


def inputs_controlnet_residuals(gen):
    skips, mid = _sd_skip_shapes(SD_TINY_BOC, 2, 16, 16)
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([500, 20], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "down_block_additional_residuals": [0.5 * _randn(gen, 2, *s) for s in skips],
        "mid_block_additional_residual": 0.5 * _randn(gen, 2, *mid),
    }


def inputs_t2i_adapter_sd(gen):
    # one feature per down block: CrossAttn blocks get it before their downsampler (full block resolution),
    # the final DownBlock2D after the block
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([640, 80], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "down_intrablock_additional_residuals": [
            0.5 * _randn(gen, 2, 8, 16, 16),
            0.5 * _randn(gen, 2, 8, 8, 8),
            0.5 * _randn(gen, 2, 16, 4, 4),
        ],
    }


def inputs_t2i_adapter_xl(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([640, 80], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "added_cond_kwargs": {
            "text_embeds": _randn(gen, 2, 12),
            "time_ids": torch.tensor(
                [[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], [1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]]
            ),
        },
        "down_intrablock_additional_residuals": [
            0.5 * _randn(gen, 2, 8, 8, 8),  # DownBlock2D: added AFTER its downsampler (also changes its last skip)
            0.5 * _randn(gen, 2, 8, 8, 8),  # CrossAttnDownBlock2D: before its downsampler
            0.5 * _randn(gen, 2, 16, 4, 4),  # final CrossAttnDownBlock2D
            0.5 * _randn(gen, 2, 16, 4, 4),  # left over, same shape as the mid block output: added after it
        ],
    }


def inputs_odd_size_upsample(gen):
    return {
        "sample": _randn(gen, 1, 4, 14, 18),
        "timestep": torch.tensor(333, dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 1),
    }


def inputs_encoder_attention_mask(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([901, 45], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2, length=9),
        "encoder_attention_mask": torch.tensor(
            [[1, 1, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0, 0]], dtype=torch.int64
        ),
    }


def inputs_attention_mask_single_res(gen):
    am = torch.ones(2, 64)
    am[0, 5:9] = 0.0
    am[1, 32:] = 0.0
    return {
        "sample": _randn(gen, 2, 4, 8, 8),
        "timestep": torch.tensor([300, 700], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "attention_mask": am,  # (B, H*W) over the 8x8 self-attention keys
        "encoder_attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 1, 0]], dtype=torch.int64),
    }


def inputs_attention_mask_only_cross(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([300, 700], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        # attn1 is a cross-attention here (only_cross_attention): attention_mask masks encoder tokens there
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1, 1]], dtype=torch.float32),
        "encoder_attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1]], dtype=torch.int64),
    }


def inputs_class_projection_concat(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([120, 880], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "class_labels": _randn(gen, 2, 10),
    }


def inputs_class_simple_projection(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([120.5, 880.25], dtype=torch.float32),
        "encoder_hidden_states": _enc(gen, 2),
        "class_labels": _randn(gen, 2, 10),
    }


def inputs_time_variants(gen):
    return {
        "sample": _rand(gen, 2, 4, 16, 16),  # in [0, 1): center_input_sample maps it to [-1, 1)
        "timestep": torch.tensor([0.37, 2.9], dtype=torch.float32),  # Fourier: sin/cos(2 pi t W), no log
        "encoder_hidden_states": _enc(gen, 2),
        "class_labels": _randn(gen, 2, 24),  # class_embed_type identity: width time_embed_dim
    }


def inputs_if_style(gen):
    return {
        "sample": _randn(gen, 2, 3, 16, 16),
        "timestep": torch.tensor([999, 333], dtype=torch.int64),
        "encoder_hidden_states": _randn(gen, 2, 9, 24),  # T5-like width encoder_hid_dim
        # SimpleCrossAttn blocks: keys are [encoder tokens, H*W tokens]; prepare_attention_mask pads the (B, 9)
        # mask with H*W zeros (keep), which lines up with the keys exactly
        "encoder_attention_mask": torch.tensor(
            [[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.int64
        ),
    }


def inputs_if2_style(gen):
    return {
        "sample": _randn(gen, 2, 6, 16, 16),
        "timestep": torch.tensor([950, 50], dtype=torch.int64),
        "encoder_hidden_states": _randn(gen, 2, 9, 24),
        "class_labels": torch.tensor([250, 20], dtype=torch.int64),  # noise level, through time_proj
    }


def inputs_k_upscaler(gen):
    sigma = torch.tensor([7.5, 0.4])
    return {
        "sample": _randn(gen, 2, 8, 16, 16),  # latents (4) + low-res image latents (4)
        "timestep": (torch.log(sigma) * 0.25).to(torch.float32),  # the latent-upscale pipeline's timestep
        "encoder_hidden_states": _enc(gen, 2),
        # pipeline: cat([noise_level_embed (64 ones + 64 zeros in the real model), pooled text]) -> time_cond_proj_dim
        "timestep_cond": torch.cat([torch.ones(2, 4), torch.zeros(2, 4), _randn(gen, 2, 12)], dim=1),
    }


def inputs_asymmetric_lists(gen):
    return {
        "sample": _randn(gen, 1, 4, 16, 16),
        "timestep": 12,  # Python int: torch.tensor([12], dtype=torch.int64)
        "encoder_hidden_states": _enc(gen, 1),
    }


def inputs_attn_up_block(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([10, 990], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
        "class_labels": torch.tensor([4, 1], dtype=torch.int64),
    }


def inputs_freeu_pow2(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([700, 150], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
    }


def inputs_freeu_odd(gen):
    return {
        "sample": _randn(gen, 1, 4, 12, 16),
        "timestep": torch.tensor([700], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 1),
    }


def inputs_lora(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([800, 100], dtype=torch.int64),
        "encoder_hidden_states": _enc(gen, 2),
    }


DUAL_CONDITION_LENGTHS = (77, 257)  # DualTransformer2DModel.condition_lengths (fixed in 0.26.3)
DUAL_COND_DIM = 8


def inputs_dual_cross_attention(gen):
    return {
        "sample": _randn(gen, 2, 4, 16, 16),
        "timestep": torch.tensor([640, 35], dtype=torch.int64),
        # [77 tokens -> transformers[1], 257 tokens -> transformers[0]] (Versatile Diffusion: text, then image)
        "encoder_hidden_states": _enc(gen, 2, length=sum(DUAL_CONDITION_LENGTHS), dim=DUAL_COND_DIM),
    }


def inputs_k_upscaler_noattn(gen):
    sigma = torch.tensor([3.0, 0.1])
    return {
        "sample": _randn(gen, 2, 8, 8, 8),
        "timestep": (torch.log(sigma) * 0.25).to(torch.float32),
        "encoder_hidden_states": _enc(gen, 2),
        "timestep_cond": torch.cat([torch.zeros(2, 4), torch.ones(2, 4), _randn(gen, 2, 12)], dim=1),
    }


# ---- UNet2DConditionModel configs ---------------------------------------------------------------------
CA_DOWN, CA_UP = "CrossAttnDownBlock2D", "CrossAttnUpBlock2D"

SD_TINY = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=SD_TINY_BOC,
    down_block_types=[CA_DOWN, CA_DOWN, "DownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["UpBlock2D", CA_UP, CA_UP],
    layers_per_block=2,
    cross_attention_dim=COND_DIM,
    attention_head_dim=2,
    norm_num_groups=4,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
    act_fn="silu",
    use_linear_projection=False,
)
SD_TINY_L1 = dict(SD_TINY, layers_per_block=1)

SDXL_TINY = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=[8, 8, 16],
    down_block_types=["DownBlock2D", CA_DOWN, CA_DOWN],
    up_block_types=[CA_UP, CA_UP, "UpBlock2D"],
    layers_per_block=2,
    transformer_layers_per_block=[1, 2, 3],
    attention_head_dim=[2, 2, 4],
    cross_attention_dim=COND_DIM,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=12 + 6 * 8,
    norm_num_groups=4,
)

IF_STYLE = dict(
    sample_size=16,
    in_channels=3,
    out_channels=6,
    block_out_channels=[8, 16, 16],
    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    layers_per_block=[1, 2, 1],
    attention_head_dim=8,
    act_fn="gelu",
    resnet_time_scale_shift="scale_shift",
    cross_attention_dim=32,
    cross_attention_norm="group_norm",
    encoder_hid_dim=24,
    addition_embed_type="text",
    addition_embed_type_num_heads=4,
    resnet_skip_time_act=True,
    resnet_out_scale_factor=1.414,
    mid_block_scale_factor=1.414,
    norm_num_groups=4,
)

@contextlib.contextmanager
def dual_transformer_mask_shim():
    """diffusers 0.26.3's CrossAttnDownBlock2D / UNetMidBlock2DCrossAttn / CrossAttnUpBlock2D call
    attn(..., encoder_attention_mask=...) on every attention module, but DualTransformer2DModel.forward has no
    such parameter (TypeError, with or without a mask). For the dual_cross_attention case only, its forward is
    wrapped to accept the keyword, require it to be None and drop it; the original forward then runs unchanged."""
    from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel

    original = DualTransformer2DModel.forward

    @functools.wraps(original)
    def forward(self, *args, encoder_attention_mask=None, **kwargs):
        if encoder_attention_mask is not None:
            raise RuntimeError("dual_transformer_mask_shim: an encoder_attention_mask would be dropped")
        return original(self, *args, **kwargs)

    DualTransformer2DModel.forward = forward
    try:
        yield
    finally:
        DualTransformer2DModel.forward = original


DUAL_SHIM_DESCRIPTION = (
    "diffusers 0.26.3 cannot run dual_cross_attention=True unpatched: CrossAttnDownBlock2D, "
    "UNetMidBlock2DCrossAttn and CrossAttnUpBlock2D call every attention module with encoder_attention_mask=..., "
    "and DualTransformer2DModel.forward has no such parameter (\"TypeError: DualTransformer2DModel.forward() got "
    "an unexpected keyword argument 'encoder_attention_mask'\", with or without a mask). For this case only, "
    "DualTransformer2DModel.forward was wrapped (tools/make_fixtures.py dual_transformer_mask_shim) to accept "
    "that keyword, assert it is None (no mask is given here) and drop it before calling diffusers' own forward; "
    "nothing else is patched and all math is diffusers'. The same wrapper was active for the from_pretrained "
    "re-check."
)

COND_FLOAT64_NOTE = (
    "float64 reference (diffusers still computes the sinusoidal projections in float32 and casts them)"
)

UNET2DCOND_CASES: List[Case] = [
    Case(
        name="sd15_tiny",
        model_class="UNet2DConditionModel",
        seed=3001,
        config=dict(SD_TINY),
        make_inputs=inputs_sd15_tiny,
        description=(
            "Stable Diffusion 1.5 layout at tiny width: CrossAttnDownBlock2D x2 + DownBlock2D, "
            "UNetMidBlock2DCrossAttn, UpBlock2D + CrossAttnUpBlock2D x2, block_out_channels [8,8,16] (SD: "
            "[320,640,1280,1280], 4 levels), layers_per_block 2 (3 resnets per up block), conv 1x1 "
            "proj_in/proj_out (use_linear_projection false), attention_head_dim 2 = number of heads (head dim "
            "4, 8 in the mid block), cross_attention_dim 16 (7 tokens), norm_num_groups 4, flip_sin_to_cos true, freq_shift "
            "0, silu; 16x16 latents, batch 2, int64 timesteps 999 and 261 (one per item); weights F32."
        ),
    ),
    Case(
        name="sd21_linear_upcast",
        model_class="UNet2DConditionModel",
        seed=3002,
        weights_dtype="F16",
        python_numbers="typed",
        config=dict(
            SD_TINY_L1,
            attention_head_dim=[1, 2, 4],
            use_linear_projection=True,
            upcast_attention=True,
            flip_sin_to_cos=False,
            freq_shift=1,
        ),
        make_inputs=inputs_sd21_linear_upcast,
        description=(
            "SD 2.1-768 style: use_linear_projection true (Linear proj_in/proj_out applied after the "
            "(B,HW,C) permute), attention_head_dim [1,2,4] = heads per down block (head dims 8, 4; the up "
            "blocks take the REVERSED list [4,2,1]: 2 heads in up block 1, ONE head of dim 8 in up block 2; the "
            "mid block the last entry 4: head dim 4), upcast_attention true "
            "(the classic processor casts q and k to float32 before q@k^T, i.e. even in this float64 reference "
            "the attention scores and softmax are float32, then cast back), flip_sin_to_cos false (sin "
            "first) with freq_shift 1; layers_per_block 1; batch 1 with the timestep given as the Python float "
            "417.25: UNet2DConditionModel does NOT truncate it (torch.tensor([417.25], dtype=torch.float64)); "
            "stored as a 0-d F64 tensor with safetensors metadata python_scalars=timestep; weights F16."
        ),
    ),
    Case(
        name="sdxl_tiny",
        model_class="UNet2DConditionModel",
        seed=3003,
        weights_dtype="BF16",
        config=dict(SDXL_TINY),
        make_inputs=inputs_sdxl_tiny,
        description=(
            "SDXL base layout: DownBlock2D + CrossAttnDownBlock2D x2, UNetMidBlock2DCrossAttn, "
            "CrossAttnUpBlock2D x2 + UpBlock2D, block_out_channels [8,8,16], layers_per_block 2, "
            "transformer_layers_per_block [1,2,3] (down blocks; up blocks reversed [3,2,1]; the mid block "
            "uses the last entry: 3 BasicTransformerBlocks), attention_head_dim [2,2,4] heads (head dim 4), linear "
            "projection, addition_embed_type text_time: add_time_proj = Timesteps(addition_time_embed_dim 8, "
            "flip true, shift 0) over the flattened (B,6) time_ids -> (B,48), concatenated after "
            "added_cond_kwargs.text_embeds (B,12) -> add_embedding TimestepEmbedding(60 -> 32) added to the "
            "time embedding; 0-d float32 timestep 731.0 broadcast to batch 2; weights BF16."
        ),
    ),
    Case(
        name="sdxl_refiner_like",
        model_class="UNet2DConditionModel",
        seed=3004,
        weights_dtype="F16",
        config=dict(
            SDXL_TINY,
            block_out_channels=[8, 8, 16, 16],
            down_block_types=["DownBlock2D", CA_DOWN, CA_DOWN, "DownBlock2D"],
            up_block_types=["UpBlock2D", CA_UP, CA_UP, "UpBlock2D"],
            layers_per_block=1,
            transformer_layers_per_block=2,
            attention_head_dim=[2, 2, 4, 4],
            cross_attention_dim=[24, 16, 16, 16],
            addition_time_embed_dim=4,
            projection_class_embeddings_input_dim=12 + 5 * 4,
        ),
        make_inputs=inputs_sdxl_refiner_like,
        description=(
            "SDXL refiner layout: 4 levels DownBlock2D, CrossAttnDownBlock2D x2, DownBlock2D / UpBlock2D, "
            "CrossAttnUpBlock2D x2, UpBlock2D (16x16 -> 2x2), transformer_layers_per_block 2 (int), "
            "cross_attention_dim given per block [24,16,16,16] (every block that has cross-attention, and the "
            "mid block, which takes the LAST entry, must match the encoder_hidden_states width 16; entry 0 "
            "belongs to a DownBlock2D and is unused), text_time with 5 time ids (orig size, crop, aesthetic "
            "score): projection_class_embeddings_input_dim 12 + 5*4 = 32, addition_time_embed_dim 4; "
            "layers_per_block 1; batch 2, int64 timesteps; weights F16."
        ),
    ),
    Case(
        name="lcm_timestep_cond",
        model_class="UNet2DConditionModel",
        seed=3005,
        weights_dtype="F16",
        config=dict(SD_TINY_L1, time_cond_proj_dim=16),
        make_inputs=inputs_lcm_timestep_cond,
        description=(
            "LCM: time_cond_proj_dim 16 creates time_embedding.cond_proj (Linear 16 -> 8, no bias); "
            "timestep_cond (B,16) is the LCM pipeline's guidance-scale embedding of w = 7.5 and 2.0 (w*1000, "
            "sin then cos, divisor half-1); time_embedding computes linear_1(t_emb + cond_proj(timestep_cond)); "
            "SD tiny layout with layers_per_block 1; weights F16."
        ),
    ),
    Case(
        name="controlnet_residuals",
        model_class="UNet2DConditionModel",
        seed=3006,
        weights_dtype="F16",
        config=dict(SD_TINY),
        make_inputs=inputs_controlnet_residuals,
        description=(
            "ControlNet residuals on the SD tiny layout (layers_per_block 2): "
            "down_block_additional_residuals.0..8, one per skip in order (conv_in output, then each "
            "resnet/transformer output and downsampler output of every down block: 9 here, 12 in SD1.5), "
            "added to the skips after the whole down pass, and mid_block_additional_residual added after the "
            "mid block (both must be given for the ControlNet path); residuals ~ 0.5*randn; weights F16."
        ),
    ),
    Case(
        name="t2i_adapter_sd",
        model_class="UNet2DConditionModel",
        seed=3007,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        make_inputs=inputs_t2i_adapter_sd,
        description=(
            "T2I-Adapter (SD1.5 style): down_intrablock_additional_residuals.0..2, one per down block, popped "
            "front to back: a CrossAttnDownBlock2D adds its residual after its last (resnet, transformer) pair "
            "and BEFORE its downsampler (so the skip kept for the up path includes it); the final DownBlock2D's "
            "residual is added in place to the block output (which is also its last skip). No residual is left "
            "for the mid block. SD tiny layout, layers_per_block 1; weights F16."
        ),
    ),
    Case(
        name="t2i_adapter_xl",
        model_class="UNet2DConditionModel",
        seed=3008,
        weights_dtype="F16",
        config=dict(SDXL_TINY, layers_per_block=1, transformer_layers_per_block=[1, 1, 2]),
        make_inputs=inputs_t2i_adapter_xl,
        description=(
            "T2I-Adapter-XL: SDXL layout (DownBlock2D first), 4 intrablock residuals: #0 is added IN PLACE "
            "after the DownBlock2D including its downsampler (shape (B,8,8,8); the skip that the downsampler "
            "produced is the same tensor, so it changes too), #1 inside the first CrossAttnDownBlock2D before "
            "its downsampler (B,8,8,8), #2 in the final CrossAttnDownBlock2D (B,16,4,4), #3 is left over and "
            "has the mid block output's shape, so it is added after the mid block; text_time conditioning as in "
            "sdxl_tiny; layers_per_block 1, transformer_layers_per_block [1,1,2]; weights F16."
        ),
    ),
    Case(
        name="odd_size_upsample",
        model_class="UNet2DConditionModel",
        seed=3009,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        make_inputs=inputs_odd_size_upsample,
        description=(
            "Latents 14x18, not divisible by 2^(levels-1) = 4: the stride-2 downsamplers give 7x9 and 4x5, and "
            "the UNet forwards upsample_size so every Upsample2D interpolates (nearest) to the size of the next "
            "skip (4x5 -> 7x9 -> 14x18) instead of doubling; both UpBlock2D and CrossAttnUpBlock2D upsample; "
            "batch 1, 0-d int64 timestep; weights F16."
        ),
    ),
    Case(
        name="encoder_attention_mask",
        model_class="UNet2DConditionModel",
        seed=3010,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        make_inputs=inputs_encoder_attention_mask,
        description=(
            "encoder_attention_mask (B,9) int64 0/1 (item 0 masks token 2, item 1 tokens 5..8): diffusers "
            "turns it into the additive bias (1-m)*-10000 (not -inf), shape (B,1,9), applied to every attn2 "
            "(cross-attention) including the mid block; 9 tokens; SD tiny layout, layers_per_block 1; weights "
            "F16."
        ),
    ),
    Case(
        name="attention_mask_single_res",
        model_class="UNet2DConditionModel",
        seed=3011,
        config=dict(
            SD_TINY_L1,
            sample_size=8,
            block_out_channels=[8, 16],
            down_block_types=[CA_DOWN, "DownBlock2D"],
            mid_block_type="UNetMidBlock2D",
            up_block_types=["UpBlock2D", CA_UP],
        ),
        make_inputs=inputs_attention_mask_single_res,
        description=(
            "attention_mask on the transformer SELF-attention (attn1): diffusers accepts it only when every "
            "transformer runs at one resolution whose H*W equals the mask length (otherwise "
            "prepare_attention_mask pads the mask by target_length zeros and the shapes no longer match), so "
            "cross-attention sits only at the top level (CrossAttnDownBlock2D + DownBlock2D / UpBlock2D + "
            "CrossAttnUpBlock2D) and mid_block_type is UNetMidBlock2D (a single resnet); 8x8 latents, "
            "attention_mask (B,64) float32 over the 8x8 keys (row-major h*W+w), plus encoder_attention_mask "
            "(B,7) int64 on attn2; both become (1-m)*-10000 biases; weights F32."
        ),
    ),
    Case(
        name="attention_mask_only_cross",
        model_class="UNet2DConditionModel",
        seed=3012,
        weights_dtype="F16",
        config=dict(
            SD_TINY_L1,
            block_out_channels=[8, 16],
            down_block_types=[CA_DOWN, CA_DOWN],
            mid_block_type="UNetMidBlock2D",
            up_block_types=[CA_UP, CA_UP],
            only_cross_attention=True,
        ),
        make_inputs=inputs_attention_mask_only_cross,
        description=(
            "only_cross_attention true: attn1 of every BasicTransformerBlock attends to encoder_hidden_states "
            "too, and attention_mask (which diffusers routes to attn1) then masks ENCODER tokens, so a (B,7) "
            "attention_mask works at every resolution; attn2 gets a different encoder_attention_mask. Mid block "
            "UNetMidBlock2D (UNetMidBlock2DCrossAttn has no only_cross_attention and would need an H*W mask); "
            "2 levels of CrossAttn blocks, layers_per_block 1; attention_mask float32, encoder_attention_mask "
            "int64; weights F16."
        ),
    ),
    Case(
        name="class_projection_concat",
        model_class="UNet2DConditionModel",
        seed=3013,
        weights_dtype="F16",
        config=dict(
            SD_TINY_L1,
            block_out_channels=[8, 16],
            down_block_types=[CA_DOWN, "DownBlock2D"],
            up_block_types=["UpBlock2D", CA_UP],
            class_embed_type="projection",
            projection_class_embeddings_input_dim=10,
            class_embeddings_concat=True,
        ),
        make_inputs=inputs_class_projection_concat,
        description=(
            "class_embed_type projection: class_embedding = TimestepEmbedding(10 -> 32, silu) applied to the "
            "float class_labels (B,10) directly (no sinusoid); class_embeddings_concat true: emb = cat([temb, "
            "class_emb]) so every resnet's time_emb_proj takes 64 inputs; 2 levels, layers_per_block 1; "
            "weights F16."
        ),
    ),
    Case(
        name="class_simple_projection",
        model_class="UNet2DConditionModel",
        seed=3014,
        weights_dtype="F16",
        config=dict(
            SD_TINY_L1,
            block_out_channels=[8, 16],
            down_block_types=[CA_DOWN, "DownBlock2D"],
            up_block_types=["UpBlock2D", CA_UP],
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=10,
        ),
        make_inputs=inputs_class_simple_projection,
        description=(
            "class_embed_type simple_projection: class_embedding = Linear(10 -> 32) on class_labels (B,10), "
            "added to the time embedding; float32 timesteps 120.5 and 880.25 (fractional, used as is); "
            "2 levels, layers_per_block 1; weights F16."
        ),
    ),
    Case(
        name="time_variants",
        model_class="UNet2DConditionModel",
        seed=3015,
        weights_dtype="F16",
        fourier_scale=1.0,
        config=dict(
            SD_TINY_L1,
            block_out_channels=[8, 16],
            down_block_types=[CA_DOWN, "DownBlock2D"],
            up_block_types=["UpBlock2D", CA_UP],
            time_embedding_type="fourier",
            time_embedding_dim=24,
            time_embedding_act_fn="mish",
            timestep_post_act="silu",
            conv_in_kernel=1,
            conv_out_kernel=5,
            center_input_sample=True,
            class_embed_type="identity",
            act_fn="gelu",
        ),
        make_inputs=inputs_time_variants,
        description=(
            "time_embedding_type fourier with time_embedding_dim 24: time_proj = GaussianFourierProjection(12, "
            "log false, flip_sin_to_cos true => cos first; NOT the UNet2DModel log/sin-first variant), "
            "time_embedding = TimestepEmbedding(24 -> 24, gelu, post_act silu: timestep_post_act), "
            "class_embed_type identity (class_labels (B,24) added as is), then time_embedding_act_fn mish "
            "applied once to the summed embedding; conv_in_kernel 1 (padding 0), conv_out_kernel 5 (padding 2), "
            "center_input_sample true (2x-1 on inputs in [0,1)), act_fn gelu; float32 timesteps 0.37 and 2.9; "
            "2 levels, layers_per_block 1; weights F16. (norm_num_groups null is not usable here: standard and "
            "SimpleCrossAttn blocks build GroupNorm(None) and fail; see k_upscaler.)"
        ),
    ),
    Case(
        name="if_style",
        model_class="UNet2DConditionModel",
        seed=3016,
        weights_dtype="F16",
        config=dict(IF_STYLE),
        make_inputs=inputs_if_style,
        description=(
            "DeepFloyd IF stage I style: ResnetDownsampleBlock2D + SimpleCrossAttnDownBlock2D x2, "
            "UNetMidBlock2DSimpleCrossAttn, SimpleCrossAttnUpBlock2D x2 + ResnetUpsampleBlock2D (resnet "
            "down/up sampling: avg-pool / nearest inside a ResnetBlock2D), act_fn gelu, resnet_time_scale_shift "
            "scale_shift, attention_head_dim 8 = head DIM here (heads = C/8), cross_attention_dim 32 with "
            "cross_attention_norm group_norm (GroupNorm(32 groups) over the 32 projected encoder channels), "
            "encoder_hid_dim 24 (encoder_hid_proj text_proj Linear 24 -> 32 applied before the blocks), "
            "addition_embed_type text: TextTimeEmbedding(24, 32, 4 heads) on the UNPROJECTED "
            "encoder_hidden_states added to the time embedding, resnet_skip_time_act true, "
            "resnet_out_scale_factor and mid_block_scale_factor 1.414, layers_per_block [1,2,1] (up blocks "
            "reversed +1: [2,3,2]), in 3 / out 6; encoder_attention_mask (B,9): the added-KV attention's keys "
            "are [9 encoder tokens, H*W tokens] and prepare_attention_mask pads the mask with target_length "
            "= H*W zeros, which matches exactly; weights F16."
        ),
    ),
    Case(
        name="if2_style",
        model_class="UNet2DConditionModel",
        seed=3017,
        weights_dtype="F16",
        config=dict(
            IF_STYLE,
            in_channels=6,
            class_embed_type="timestep",
            only_cross_attention=True,
            mid_block_only_cross_attention=False,
            cross_attention_norm="layer_norm",
            cross_attention_dim=16,
            layers_per_block=[1, 1, 2],
        ),
        make_inputs=inputs_if2_style,
        description=(
            "DeepFloyd IF stage II style: in 6 (noisy image + upscaled low-res), class_embed_type timestep "
            "(int64 noise levels 250 and 20 go through the shared sinusoidal time_proj, then their own "
            "TimestepEmbedding, added), only_cross_attention true: SimpleCrossAttn down/up blocks have NO "
            "to_k/to_v (keys/values only from add_k_proj/add_v_proj of the encoder tokens), while "
            "mid_block_only_cross_attention false overrides it for the mid block (which keeps to_k/to_v: keys "
            "[encoder, H*W]), cross_attention_norm layer_norm (LayerNorm(16) on the projected encoder states), "
            "encoder_hid_dim 24, addition_embed_type text, layers_per_block [1,1,2], otherwise as if_style. No "
            "encoder_attention_mask: with only_cross_attention the padded mask (9 + H*W) no longer matches the "
            "9 keys and diffusers fails; weights F16."
        ),
    ),
    Case(
        name="k_upscaler",
        model_class="UNet2DConditionModel",
        seed=3018,
        weights_dtype="F16",
        fourier_scale=1.0,
        config=dict(
            sample_size=16,
            in_channels=8,
            out_channels=5,
            block_out_channels=[32, 32],
            down_block_types=["KDownBlock2D", "KCrossAttnDownBlock2D"],
            mid_block_type=None,
            up_block_types=["KCrossAttnUpBlock2D", "KUpBlock2D"],
            layers_per_block=1,
            act_fn="gelu",
            norm_num_groups=None,
            attention_head_dim=8,
            cross_attention_dim=COND_DIM,
            time_cond_proj_dim=20,
            time_embedding_type="fourier",
            time_embedding_dim=32,
            timestep_post_act="gelu",
            resnet_time_scale_shift="scale_shift",
            conv_in_kernel=1,
            conv_out_kernel=1,
        ),
        make_inputs=inputs_k_upscaler,
        description=(
            "sd-x2-latent-upscaler (k-diffusion UNet) shape as diffusers' scripts/convert_k_upscaler_to_diffusers"
            ".py builds it, reduced: KDownBlock2D + KCrossAttnDownBlock2D / KCrossAttnUpBlock2D + KUpBlock2D, "
            "mid_block_type null, norm_num_groups null (the K blocks use AdaGroupNorm with C//32 groups; no "
            "conv_norm_out/conv_act at the end), act gelu, attention_head_dim 8 = head dim, Fourier time "
            "embedding (time_embedding_dim 32, log false) with timestep_post_act gelu, time_cond_proj_dim 20 "
            "(timestep_cond = [noise-level flags, pooled text]), conv_in/conv_out kernel 1, in 8 / out 5; "
            "block_out_channels [32,32] with time_embedding_dim 32: K up blocks detect the FIRST up block by "
            "in == out == temb channels, so the deepest two widths must equal the time embedding width "
            "(diffusers' own dummy latent-upscaler test config [32,32,64,64] with temb 64 satisfies it; the "
            "real checkpoint's widths were not checked here); K blocks need C >= 32 (C//32 groups); 2 levels "
            "keep this fixture small, so the 'middle' K up block variant (no self-attention) is not covered; "
            "timestep = 0.25*log(sigma) float32; weights F16."
        ),
    ),
    Case(
        name="asymmetric_lists",
        model_class="UNet2DConditionModel",
        seed=3019,
        weights_dtype="F16",
        python_numbers="typed",
        config=dict(
            SD_TINY,
            layers_per_block=[2, 2, 1],
            only_cross_attention=[True, False, False],
            transformer_layers_per_block=[[1, 2], [2, 1], [1]],
            reverse_transformer_layers_per_block=[[1, 1], [2, 1, 3], [1, 2, 1]],
            cross_attention_dim=[COND_DIM, COND_DIM, COND_DIM],
            attention_head_dim=[2, 4, 2],
        ),
        make_inputs=inputs_asymmetric_lists,
        description=(
            "Per-block lists (SSD-1B/Vega-style asymmetric UNet): layers_per_block [2,2,1] (up blocks use "
            "reversed+1: [2,3,3]), transformer_layers_per_block as a list of lists per down-block layer "
            "[[1,2],[2,1],[1]] (the mid block takes the last entry [1]) with reverse_transformer_layers_per_block "
            "[[1,1],[2,1,3],[1,2,1]] giving the up blocks' depths per layer explicitly, only_cross_attention per "
            "block [true,false,false] (reversed for the up blocks: the LAST up block has attn1 as a "
            "cross-attention), cross_attention_dim as a per-block list, attention_head_dim [2,4,2] heads "
            "(up: reversed [2,4,2]; mid: 2); batch 1 with a Python int timestep 12 (stored I64 0-d, "
            "python_scalars; diffusers makes torch.tensor([12], dtype=torch.int64)); weights F16."
        ),
    ),
    Case(
        name="attn_up_block",
        model_class="UNet2DConditionModel",
        seed=3020,
        weights_dtype="F16",
        config=dict(
            SD_TINY_L1,
            block_out_channels=[8, 16],
            down_block_types=["DownBlock2D", CA_DOWN],
            mid_block_type="UNetMidBlock2D",
            up_block_types=["AttnUpBlock2D", "AttnUpBlock2D"],
            attention_head_dim=[2, 4],
            num_class_embeds=5,
        ),
        make_inputs=inputs_attn_up_block,
        description=(
            "AttnUpBlock2D in a UNet2DConditionModel (it runs in 0.26.3; AttnDownBlock2D does not: its forward "
            "rejects the scale= keyword the model passes): up blocks AttnUpBlock2D x2 (resnet + deprecated-style "
            "attention with GroupNorm(4) and residual, no cross-attention; it ignores upsample_size, so odd "
            "latent sizes fail), attention_head_dim [2,4] is a head DIM for AttnUpBlock2D and is NOT reversed "
            "for up blocks (up block 0 at 16 channels: head dim 2 => 8 heads; up block 1 at 8 channels: head "
            "dim 4 => 2 heads) while the CrossAttnDownBlock2D uses entry 1 = 4 as a head COUNT; mid_block_type "
            "UNetMidBlock2D = ONE resnet (num_layers 0, no attention); num_class_embeds 5 (nn.Embedding, int64 "
            "class_labels, added); weights F16."
        ),
    ),
    Case(
        name="freeu_pow2",
        model_class="UNet2DConditionModel",
        seed=3021,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        freeu=dict(s1=0.9, s2=0.2, b1=1.5, b2=1.6),
        make_inputs=inputs_freeu_pow2,
        description=(
            "FreeU (unet.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6), SD1.5 values; replay from meta.json "
            "apply.freeu): in up blocks 0 (UpBlock2D) and 1 (CrossAttnUpBlock2D), at every resnet, the first "
            "half of the backbone channels is multiplied by b1/b2 and the skip goes through fourier_filter "
            "(fftn over H,W, fftshift, the centred 2x2 box [H//2-1:H//2+1, W//2-1:W//2+1] times s1/s2, inverse); "
            "16x16 latents: the skips there are 4x4 and 8x8 (powers of two: the FFT runs in float64 in this "
            "reference); batch 2; weights F16."
        ),
    ),
    Case(
        name="freeu_odd",
        model_class="UNet2DConditionModel",
        seed=3022,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        freeu=dict(s1=0.9, s2=0.2, b1=1.5, b2=1.6),
        make_inputs=inputs_freeu_odd,
        description=(
            "FreeU as freeu_pow2 on 12x16 latents: the skips of up blocks 0 and 1 are 3x4 and 6x8; H is not a "
            "power of two, so diffusers casts the skip to float32 for the FFT filter (and back): the filter "
            "runs in float32 even in this float64 reference; centre box rows H//2-1..H//2 = 0..1 (H=3) and 2..3 "
            "(H=6); batch 1; weights F16."
        ),
    ),
    Case(
        name="lora_diffusers",
        model_class="UNet2DConditionModel",
        seed=3023,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        lora=LoraSpec(format="diffusers", scale=0.7, seed=4001, with_nomatch=True),
        make_inputs=inputs_lora,
        description=(
            "LoRA in diffusers format (lora.safetensors, F32, keys unet.<module>.lora.down.weight / "
            ".lora.up.weight, rank 4, no alphas: diffusers 0.26.3 reads none from such a file, so the factor "
            "alpha/rank is absent) on EVERY layer the non-PEFT loader accepts (meta apply_details.lora_layers: "
            "attention to_q/to_k/to_v/to_out.0, GEGLU proj and FF output, proj_in/proj_out (1x1 convs), resnet "
            "conv1/conv2/conv_shortcut/time_emb_proj, downsampler/upsampler convs, time_embedding.linear_1/"
            "linear_2); run with cross_attention_kwargs={\"scale\": 0.7}: W x + 0.7*up(down(x)) everywhere "
            "EXCEPT time_embedding.linear_1/2, which diffusers calls without the scale (their LoRA counts with "
            "scale 1.0); the LoRA conv down layers use the base conv's kernel/stride/padding, up is 1x1. Also "
            "holds lora_nomatch.safetensors (keys for modules that do not exist; diffusers raises, see "
            "apply_details.nomatch_error). SD tiny layout, layers_per_block 1; weights F16."
        ),
    ),
    Case(
        name="lora_diffusers_fused",
        model_class="UNet2DConditionModel",
        seed=3023,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        lora=LoraSpec(format="diffusers", scale=0.7, fused=True, seed=4001),
        make_inputs=inputs_lora,
        description=(
            "Same model, inputs and LoRA file as lora_diffusers, but unet.fuse_lora(lora_scale=0.7) (W += "
            "0.7*up@down, computed by diffusers in float32 even for this float64 model, then cast) and a run "
            "without cross_attention_kwargs. Differs from lora_diffusers beyond float tolerance because fusing "
            "scales the time_embedding LoRA by 0.7 while the unfused run applies it at 1.0 (see "
            "apply_details.fused_vs_unfused_*)."
        ),
    ),
    Case(
        name="lora_kohya",
        model_class="UNet2DConditionModel",
        seed=3023,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        lora=LoraSpec(format="kohya", scale=0.7, seed=4001, file_dtype="F16"),
        make_inputs=inputs_lora,
        description=(
            "The same random LoRA tensors in kohya format (lora.safetensors, F16: lora_unet_<module path with "
            "'_'>.lora_down.weight / .lora_up.weight / .alpha), converted by diffusers' own "
            "_convert_kohya_lora_to_diffusers onto the same layers except time_embedding.linear_1/2 (a "
            "lora_unet_time_embedding_* name does not map back in 0.26.3); alphas per layer kind: attention 2.0, "
            "feed-forward 3.0, everything else 6.0 (rank 4: factors 0.5, 0.75, 1.5); scale 0.7 unfused. Same "
            "base model and inputs as lora_diffusers."
        ),
    ),
    Case(
        name="lora_kohya_fused",
        model_class="UNet2DConditionModel",
        seed=3023,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        lora=LoraSpec(format="kohya", scale=0.7, fused=True, seed=4001, file_dtype="F16"),
        make_inputs=inputs_lora,
        description=(
            "lora_kohya fused: unet.fuse_lora(lora_scale=0.7) (alpha/rank folded in, float32 arithmetic), run "
            "without cross_attention_kwargs; matches the unfused lora_kohya output to float32-level precision "
            "(apply_details.fused_vs_unfused_*)."
        ),
    ),
    Case(
        name="lora_peft",
        model_class="UNet2DConditionModel",
        seed=3023,
        weights_dtype="F16",
        config=dict(SD_TINY_L1),
        lora=LoraSpec(
            format="peft",
            scale=0.7,
            seed=4002,
            peft_ranks={"other": 2, "attention": 4, "projection": 8, "feed_forward": 1},
            peft_lora_alpha=4.0,
        ),
        make_inputs=inputs_lora,
        description=(
            "LoRA in PEFT key form (lora.safetensors, F32, keys unet.<module>.lora_A.weight (down) / "
            ".lora_B.weight (up), no alphas), written by PEFT 0.9.0 itself: unet.add_adapter(LoraConfig(r=2, "
            "lora_alpha=4, rank_pattern: attention to_q/to_k/to_v/to_out.0 4, proj_in/proj_out 8, ff.net.0.proj/"
            "ff.net.2 1; target_modules: every Linear/Conv2d, i.e. the lora_diffusers layers plus conv_in and "
            "conv_out)) -> get_peft_model_state_dict -> save_lora_weights: a training script's save path without "
            "convert_state_dict_to_diffusers (the official 0.26.3 train_text_to_image_lora.py converts, which "
            "renames only to_q/to_k/to_v/to_out.0 keys to lora.down/lora.up). Loaded by diffusers 0.26.3's own "
            "LoraLoaderMixin.lora_state_dict + load_lora_into_unet with its PEFT backend (peft 0.9.0 and "
            "transformers 4.38.2 importable; not loadable without them). Ranks come from the tensor shapes; the "
            "file carries no alphas and diffusers reads none (network_alphas only from kohya .alpha keys; the "
            "LoraConfig is not saved), so get_peft_kwargs sets lora_alpha = the rank of the FIRST lora_B key "
            "(sorted order: unet.conv_in, rank 2) and every layer gets scaling 2/rank: 'other' layers (rank 2: "
            "conv_in, conv_out, time_embedding, resnets, samplers) 1.0, attention (4) 0.5, proj_in/proj_out (8) "
            "0.25, feed-forward (1) 2.0 - half the training-time lora_alpha/r = 4/r. Runtime scale 0.7 "
            "(cross_attention_kwargs): layer output W x + b + 0.7 * scaling * B(A(x)) from the down blocks through "
            "conv_out, but conv_in and time_embedding.linear_1/2 run with scaling alone (diffusers calls "
            "scale_lora_layers after them), like the non-PEFT path's unscaled time embedding. The LoRA down conv "
            "uses the base conv's kernel/stride/padding, the up conv is 1x1. Same base model (byte-identical "
            "weights) and inputs as lora_diffusers; apply_details.lora_layers lists rank, scaling and whether the "
            "runtime scale applies, per layer."
        ),
    ),
    Case(
        name="dual_cross_attention",
        model_class="UNet2DConditionModel",
        seed=3024,
        weights_dtype="F16",
        config=dict(
            SD_TINY_L1,
            block_out_channels=[8, 16],
            down_block_types=[CA_DOWN, "DownBlock2D"],
            up_block_types=["UpBlock2D", CA_UP],
            cross_attention_dim=DUAL_COND_DIM,
            dual_cross_attention=True,
        ),
        shim=dual_transformer_mask_shim,
        shim_description=DUAL_SHIM_DESCRIPTION,
        make_inputs=inputs_dual_cross_attention,
        meta_extra={
            "dual_transformer": {
                "condition_lengths": list(DUAL_CONDITION_LENGTHS),
                "transformer_index_for_condition": [1, 0],
                "mix_ratio": 0.5,
                "formula": (
                    "y = 0.5 * (transformers[1](x, ehs[:, 0:77]) - x) + 0.5 * (transformers[0](x, ehs[:, 77:334]) - x)"
                    " + x, each transformers[i] a complete Transformer2DModel (GroupNorm, proj_in, blocks, "
                    "proj_out, + its own residual x)"
                ),
            },
        },
        description=(
            "dual_cross_attention true (Versatile Diffusion's dual-guided attention): every CrossAttn block's "
            "attention is a DualTransformer2DModel holding transformers.0 and transformers.1, two complete "
            "Transformer2DModels on the same input x (each: GroupNorm(4), 1x1 conv proj_in, ONE "
            "BasicTransformerBlock, proj_out, + x). encoder_hidden_states (2, 334, 8) is split at the fixed "
            "condition_lengths [77, 257]: tokens 0..76 go to transformers[1], tokens 77..333 to transformers[0] "
            "(transformer_index_for_condition [1, 0]); output = 0.5*(T1(x) - x) + 0.5*(T0(x) - x) + x (mix_ratio "
            "0.5). The dual transformers are built with num_layers 1 and Transformer2DModel defaults: "
            "use_linear_projection, only_cross_attention, upcast_attention, transformer_layers_per_block and "
            "attention_type of the config do not reach them; attention_mask is not used. Layout: "
            "CrossAttnDownBlock2D (8 ch, 2 heads of 4) + DownBlock2D (16), UNetMidBlock2DCrossAttn (dual, 16 ch, 2 "
            "heads of 8), UpBlock2D + CrossAttnUpBlock2D (dual, 8 ch), layers_per_block 1, cross_attention_dim 8, "
            "norm_num_groups 4; batch 2, int64 timesteps; weights F16. diffusers 0.26.3 cannot run this unpatched "
            "(see reference_shim in meta.json: DualTransformer2DModel.forward wrapped to accept and drop "
            "encoder_attention_mask=None)."
        ),
    ),
    Case(
        name="k_upscaler_noattn",
        model_class="UNet2DConditionModel",
        seed=3025,
        weights_dtype="F16",
        fourier_scale=1.0,
        config=dict(
            sample_size=8,
            in_channels=8,
            out_channels=5,
            block_out_channels=[32, 64],
            down_block_types=["KCrossAttnDownBlock2D", "KDownBlock2D"],
            mid_block_type=None,
            up_block_types=["KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D"],
            layers_per_block=1,
            act_fn="gelu",
            norm_num_groups=None,
            attention_head_dim=8,
            cross_attention_dim=COND_DIM,
            time_cond_proj_dim=20,
            time_embedding_type="fourier",
            time_embedding_dim=16,
            timestep_post_act="gelu",
            resnet_time_scale_shift="scale_shift",
            conv_in_kernel=1,
            conv_out_kernel=1,
        ),
        make_inputs=inputs_k_upscaler_noattn,
        description=(
            "The K-block variants k_upscaler does not reach (same K-UNet options: mid_block_type null, "
            "norm_num_groups null, AdaGroupNorm with C//32 groups, gelu, Fourier time embedding with "
            "timestep_post_act gelu, time_cond_proj_dim 20, conv_in/conv_out kernel 1, attention_head_dim 8 = head "
            "dim, in 8 / out 5), block_out_channels [32,64] with time_embedding_dim 16 (16 != every width, so no "
            "up block is a 'first' block): down 0 KCrossAttnDownBlock2D NOT final => add_self_attention false "
            "(KAttentionBlock without attn1/norm1: AdaGroupNorm -> cross-attention -> residual only) and a "
            "KDownsample2D, its skip = the attention output; down 1 KDownBlock2D as the FINAL block (no "
            "downsampler, 32 -> 64 with a bias-free 1x1 conv_shortcut, skip = resnet output, not None). Up 0 "
            "KCrossAttnUpBlock2D with in 32 != out 64: the 'middle' variant: no self-attention, concatenates the "
            "LAST skip of its group only (64 + 64 = 128 channels), resnet 128 -> 64 whose conv2 outputs in_channels "
            "32 (conv_2d_out_channels; shortcut 128 -> 32), KAttentionBlock at 32 channels (4 heads), then "
            "KUpsample2D. Up 1 KCrossAttnUpBlock2D with in == out == 32 != temb 16: no self-attention, concat "
            "(32 + 32 from down 0's attention output; conv_in's skip is never used), resnet 64 -> 32, attention at "
            "32, no upsampler. 8x8 latents (4x4 inside), batch 2, timestep = 0.25*log(sigma) float32 (sigmas 3.0 "
            "and 0.1); weights F16. 64 channels are the least a 'middle' block allows (widths are multiples of 32 "
            "and in != out), hence the size."
        ),
    ),
]
for _c in UNET2DCOND_CASES:
    _c.python_numbers = "typed"


# --------------------------------------------------------------------------------------------------
# LoRA files (UNet2DConditionModel, non-PEFT loaders of diffusers 0.26.3)
# --------------------------------------------------------------------------------------------------
# kohya alpha per layer kind (rank 4: alpha/rank = 0.5, 0.75, 1.5): distinct so that a loader that applies
# one global alpha, or none, fails the test
KOHYA_ALPHAS = {"attention": 2.0, "feed_forward": 3.0, "other": 6.0}
LORA_UP_GAIN = 0.2  # LoRA up matrices ~ U(+-sqrt(3/rank)) * gain; down matrices ~ U(+-sqrt(3/fan_in))


def lora_target_modules(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Module]]:
    """Every layer diffusers 0.26.3's non-PEFT `load_attn_procs` can put a LoRA on: the LoRACompatibleLinear
    and LoRACompatibleConv modules (attention to_q/to_k/to_v/to_out.0 and add_k_proj/add_v_proj, GEGLU proj
    and FF output, Transformer2D proj_in/proj_out, resnet conv1/conv2/conv_shortcut/time_emb_proj, down/up
    sampler convs, TimestepEmbedding linear_1/linear_2 of time_embedding/add_embedding/class_embedding).
    conv_in, conv_out, encoder_hid_proj, cond_proj, norms are plain torch layers."""
    from diffusers.models.lora import LoRACompatibleConv, LoRACompatibleLinear

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (LoRACompatibleConv, LoRACompatibleLinear))]


def _lora_kind(name: str) -> str:
    last = name.split(".")
    if any(p in ("to_q", "to_k", "to_v", "to_out", "add_k_proj", "add_v_proj") for p in last):
        return "attention"
    if ".ff." in f".{name}.":
        return "feed_forward"
    return "other"


def _kohya_expressible(name: str) -> bool:
    """diffusers' kohya converter maps `lora_unet_<name with _>` back only for the UNet's block modules."""
    return name.startswith(("down_blocks.", "mid_block.", "up_blocks."))


def write_lora_files(case: Case, model: torch.nn.Module, folder: str) -> Dict[str, Any]:
    if case.lora.format == "peft":
        return write_lora_files_peft(case, model, folder)
    spec = case.lora
    gen = torch.Generator().manual_seed(spec.seed)
    file_dtype = STORAGE_DTYPES[spec.file_dtype]
    targets = lora_target_modules(model)
    if spec.format == "kohya":
        skipped = [n for n, _ in targets if not _kohya_expressible(n)]
        targets = [(n, m) for n, m in targets if _kohya_expressible(n)]
    else:
        skipped = []
    r = spec.rank
    sd: Dict[str, torch.Tensor] = {}
    layers: Dict[str, Any] = {}
    for name, mod in targets:
        if isinstance(mod, torch.nn.Conv2d):
            down_shape = (r, mod.in_channels) + tuple(mod.kernel_size)
            up_shape = (mod.out_channels, r, 1, 1)
        else:
            down_shape = (r, mod.in_features)
            up_shape = (mod.out_features, r)
        down = _avoid_tiny(_fan_in_uniform(down_shape, gen)).to(file_dtype)
        up = _avoid_tiny((torch.rand(up_shape, generator=gen) * 2 - 1) * math.sqrt(3.0 / r) * LORA_UP_GAIN)
        up = up.to(file_dtype)
        alpha = KOHYA_ALPHAS[_lora_kind(name)] if spec.format == "kohya" else None
        if spec.format == "diffusers":
            sd[f"unet.{name}.lora.down.weight"] = down
            sd[f"unet.{name}.lora.up.weight"] = up
        elif spec.format == "kohya":
            kname = "lora_unet_" + name.replace(".", "_")
            sd[f"{kname}.lora_down.weight"] = down
            sd[f"{kname}.lora_up.weight"] = up
            sd[f"{kname}.alpha"] = torch.tensor(alpha, dtype=file_dtype)
        else:
            raise ValueError(spec.format)
        layers[name] = alpha
    safetensors.torch.save_file(sd, os.path.join(folder, spec.file))
    info: Dict[str, Any] = {
        "rank": r,
        "file_dtype": spec.file_dtype,
        "num_lora_layers": len(layers),
        "lora_layers": sorted(layers),
        "network_alpha": (
            {k: v for k, v in KOHYA_ALPHAS.items()} if spec.format == "kohya" else None
        ),
    }
    if skipped:
        info["accepted_but_not_expressible_in_this_format"] = skipped
    if spec.with_nomatch:
        info["nomatch_error"] = write_lora_nomatch(model, folder, gen)
    info["_expected_layers"] = layers
    return info


def write_lora_nomatch(model: torch.nn.Module, folder: str, gen: torch.Generator) -> str:
    """lora_nomatch.safetensors: diffusers-format LoRA keys for modules that do not exist (an `attn3` in a
    transformer block, a down block index past the end). Returns the error diffusers raises for it."""
    from diffusers.loaders.lora import LoraLoaderMixin  # (not re-exported without transformers)

    nd = len(model.down_blocks)
    sd = {}
    for name, fan_in, fan_out in [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn3.to_q", 8, 8),
        (f"down_blocks.{nd + 3}.resnets.0.time_emb_proj", 32, 8),
    ]:
        sd[f"unet.{name}.lora.down.weight"] = _avoid_tiny(_fan_in_uniform((4, fan_in), gen))
        sd[f"unet.{name}.lora.up.weight"] = _avoid_tiny(_fan_in_uniform((fan_out, 4), gen))
    path = os.path.join(folder, "lora_nomatch.safetensors")
    safetensors.torch.save_file(sd, path)
    probe = model.__class__.from_config(model.config)
    try:
        state_dict, alphas = LoraLoaderMixin.lora_state_dict(folder, weight_name="lora_nomatch.safetensors")
        LoraLoaderMixin.load_lora_into_unet(state_dict, alphas, probe)
    except Exception as exc:  # noqa: BLE001 - any error is what we want to record
        return f"{type(exc).__name__}: {exc}"
    raise RuntimeError("lora_nomatch.safetensors loaded without error")


def apply_lora(model: torch.nn.Module, case: Case, folder: str, info: Dict[str, Any]) -> None:
    """Load the case's LoRA file the way pipeline.load_lora_weights does for the UNet; check which layers
    got a LoRA (and their alphas); fuse when the case asks for it."""
    from diffusers.loaders.lora import LoraLoaderMixin  # (not re-exported without transformers)

    if case.lora.format == "peft":
        apply_lora_peft(model, case, folder, info)
        return
    spec = case.lora
    state_dict, alphas = LoraLoaderMixin.lora_state_dict(folder, weight_name=spec.file)
    LoraLoaderMixin.load_lora_into_unet(state_dict, alphas, model)
    got = {}
    for name, mod in lora_target_modules(model):
        layer = getattr(mod, "lora_layer", None)
        if layer is not None:
            got[name] = layer.network_alpha
            if layer.rank != spec.rank:
                raise RuntimeError(f"{case.name}: {name} got rank {layer.rank}")
    expected = info.get("_expected_layers")
    if expected is not None and got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))
        raise RuntimeError(f"{case.name}: LoRA landed on other layers/alphas than written: {diff[:10]}")
    if spec.fused:
        model.fuse_lora(lora_scale=spec.scale)


# --------------------------------------------------------------------------------------------------
# PEFT-form LoRA (diffusers 0.26.3's PEFT backend; needs the peft interpreter, see the header)
# --------------------------------------------------------------------------------------------------
PEFT_PYTHON_ENV = "MAKE_FIXTURES_PEFT_PYTHON"
# LoraConfig.target_modules of the "training" adapter: PEFT matches a module whose name equals an entry or ends
# with "." + entry. Together: every nn.Linear / nn.Conv2d of an SD-style UNet2DConditionModel under the PEFT
# backend (= every layer the non-PEFT loader accepts, plus conv_in and conv_out).
PEFT_TARGET_MODULES = [
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv",
    "linear_1", "linear_2", "conv_in", "conv_out",
]
# rank_pattern keys per layer kind. peft 0.9.0 matches them with re.match(rf".*\.{key}$", name), which cannot
# match a top-level name (conv_in, conv_out): those always get LoraConfig.r, so "other" must be the default r.
PEFT_KIND_PATTERNS = {
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "projection": ["proj_in", "proj_out"],
    "feed_forward": ["ff.net.0.proj", "ff.net.2"],
}
# modules diffusers 0.26.3 runs BEFORE scale_lora_layers(self, lora_scale) in UNet2DConditionModel.forward
# (time/class/added embeddings, encoder_hid_proj, conv_in): their LoRA ignores cross_attention_kwargs["scale"]
PEFT_UNSCALED_PREFIXES = ("time_embedding.", "class_embedding.", "add_embedding.", "encoder_hid_proj.")
PEFT_UNSCALED_NAMES = ("conv_in",)


def _peft_kind(name: str) -> str:
    for kind, suffixes in PEFT_KIND_PATTERNS.items():
        if any(name.endswith("." + sfx) for sfx in suffixes):
            return kind
    return "other"


def _peft_unscaled(name: str) -> bool:
    return name in PEFT_UNSCALED_NAMES or name.startswith(PEFT_UNSCALED_PREFIXES)


def _peft_lora_layers(model: torch.nn.Module) -> Dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def peft_training_config(spec: LoraSpec) -> Dict[str, Any]:
    rank_pattern = {sfx: spec.peft_ranks[kind] for kind, sfxs in PEFT_KIND_PATTERNS.items() for sfx in sfxs}
    return {
        "r": spec.peft_ranks["other"],
        "lora_alpha": spec.peft_lora_alpha,
        "target_modules": list(PEFT_TARGET_MODULES),
        "rank_pattern": rank_pattern,
    }


def write_lora_files_peft(case: Case, model: torch.nn.Module, folder: str) -> Dict[str, Any]:
    """Create the adapter with PEFT on a copy of the model (unet.add_adapter(LoraConfig)), give it random
    weights, and save it the way a training script does: get_peft_model_state_dict -> save_lora_weights."""
    from diffusers.loaders.lora import LoraLoaderMixin
    from peft import LoraConfig, get_peft_model_state_dict

    spec = case.lora
    file_dtype = STORAGE_DTYPES[spec.file_dtype]
    targets = sorted(n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    train_cfg = peft_training_config(spec)
    probe = model.__class__.from_config(model.config)
    probe.add_adapter(LoraConfig(**train_cfg), adapter_name="default")
    layers = _peft_lora_layers(probe)
    if sorted(layers) != targets:
        raise RuntimeError(f"{case.name}: PEFT adapter layers != every Linear/Conv2d: "
                           f"{sorted(set(layers) ^ set(targets))}")
    gen = torch.Generator().manual_seed(spec.seed)
    ranks: Dict[str, int] = {}
    with torch.no_grad():
        for name in targets:
            layer = layers[name]
            r = layer.r["default"]
            if r != spec.peft_ranks[_peft_kind(name)]:
                raise RuntimeError(f"{case.name}: PEFT gave {name} rank {r}, wanted {spec.peft_ranks[_peft_kind(name)]}")
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            down = _avoid_tiny(_fan_in_uniform(tuple(a.shape), gen))
            up = _avoid_tiny((torch.rand(tuple(b.shape), generator=gen) * 2 - 1) * math.sqrt(3.0 / r) * LORA_UP_GAIN)
            a.copy_(down.to(file_dtype).to(a.dtype))
            b.copy_(up.to(file_dtype).to(b.dtype))
            ranks[name] = r
    sd = {k: v.detach().to(file_dtype).contiguous() for k, v in get_peft_model_state_dict(probe).items()}
    want_keys = {f"{n}.lora_{ab}.weight" for n in targets for ab in "AB"}
    if set(sd) != want_keys:
        raise RuntimeError(f"{case.name}: unexpected PEFT state dict keys {sorted(set(sd) ^ want_keys)[:6]}")
    LoraLoaderMixin.save_lora_weights(save_directory=folder, unet_lora_layers=sd, weight_name=spec.file,
                                      safe_serialization=True)
    written = safetensors.torch.load_file(os.path.join(folder, spec.file))
    if sorted(written) != sorted(f"unet.{k}" for k in sd):
        raise RuntimeError(f"{case.name}: save_lora_weights wrote other keys than unet.<peft key>")
    kinds = sorted({_peft_kind(n) for n in targets})
    return {
        "file_dtype": spec.file_dtype,
        "file_keys": "unet.<module>.lora_A.weight (down: Linear (r, in) / Conv2d (r, in, kh, kw) with the base "
                     "conv's stride and padding) and unet.<module>.lora_B.weight (up: (out, r) / (out, r, 1, 1)); "
                     "no alpha keys; safetensors metadata {\"format\": \"pt\"}",
        "written_by": "unet.add_adapter(LoraConfig(**training_lora_config)) -> peft.get_peft_model_state_dict -> "
                      "LoraLoaderMixin.save_lora_weights(unet_lora_layers=...) (no convert_state_dict_to_diffusers)",
        "training_lora_config": train_cfg,
        "training_lora_config_note": (
            "the adapter was created with this LoraConfig (PEFT scaling lora_alpha/r per layer); NONE of it is "
            "stored in the file except the ranks (tensor shapes), and diffusers 0.26.3 does not read it: the "
            "reference uses diffusers' own reconstruction, see diffusers_lora_alpha and lora_layers"
        ),
        "rank_by_kind": {k: spec.peft_ranks[k] for k in kinds},
        "kinds": {
            "attention": "to_q/to_k/to_v/to_out.0",
            "projection": "Transformer2DModel proj_in/proj_out",
            "feed_forward": "ff.net.0.proj (GEGLU proj) and ff.net.2",
            "other": "conv_in, conv_out, time_embedding.linear_1/2, resnet conv1/conv2/conv_shortcut/time_emb_proj, "
                     "downsampler/upsampler convs",
        },
        "num_lora_layers": len(targets),
        "_expected_ranks": ranks,
    }


def apply_lora_peft(model: torch.nn.Module, case: Case, folder: str, info: Dict[str, Any]) -> None:
    """Load the file as pipeline.load_lora_weights does for the UNet under diffusers 0.26.3's PEFT backend and
    check the ranks and scalings diffusers gave each layer (scaling = lora_alpha / r with lora_alpha = the rank
    of the first lora_B key: diffusers' get_peft_kwargs, the file having no alphas)."""
    from diffusers.loaders.lora import LoraLoaderMixin

    spec = case.lora
    state_dict, alphas = LoraLoaderMixin.lora_state_dict(folder, weight_name=spec.file)
    if alphas is not None:
        raise RuntimeError(f"{case.name}: diffusers found network alphas in a PEFT file: {alphas}")
    first_b = next(k for k in state_dict if ".lora_B." in k)
    lora_alpha = state_dict[first_b].shape[1]
    key_order_sorted = list(state_dict) == sorted(state_dict)
    LoraLoaderMixin.load_lora_into_unet(state_dict, alphas, model)
    got: Dict[str, Dict[str, Any]] = {}
    for name, layer in _peft_lora_layers(model).items():
        (adapter,) = layer.r.keys()
        r, scaling = layer.r[adapter], layer.scaling[adapter]
        if scaling != lora_alpha / r:
            raise RuntimeError(f"{case.name}: {name}: diffusers scaling {scaling} != {lora_alpha}/{r}")
        got[name] = {"rank": r, "scaling": scaling}
    expected = info.get("_expected_ranks")
    if expected is not None:
        if {n: v["rank"] for n, v in got.items()} != expected:
            raise RuntimeError(f"{case.name}: LoRA landed on other layers/ranks than written")
        info["lora_layers"] = {n: {**got[n], "runtime_scale_applied": not _peft_unscaled(n)} for n in sorted(got)}
        info["diffusers_lora_alpha"] = lora_alpha
        info["diffusers_rule"] = (
            "lora_state_dict returns network_alphas None (only kohya .alpha keys give alphas); load_lora_into_unet "
            "-> convert_unet_state_dict_to_peft -> get_peft_kwargs(rank per lora_B shape[1], None): r = the most "
            "common rank, rank_pattern = the others, lora_alpha = the rank of the FIRST lora_B key in state-dict "
            f"order ({first_b!r}, rank {lora_alpha}; safetensors' load_file returns the keys sorted: "
            f"{key_order_sorted}); PEFT layer scaling = lora_alpha / rank. Output of a layer: "
            "W x + b + B(A(x)) * scaling * s, with s = cross_attention_kwargs['scale'] for every layer except "
            "conv_in and time_embedding.linear_1/2 (s = 1 there: UNet2DConditionModel.forward calls "
            "scale_lora_layers after the time embedding and conv_in, and unscale_lora_layers after conv_out)"
        )
        info["runtime_scale_not_applied_to"] = sorted(n for n in got if _peft_unscaled(n))
        info.pop("_expected_ranks")


def peft_scale_rule_check(model: torch.nn.Module, case: Case, inputs: Dict[str, Any], out: torch.Tensor) -> float:
    """Re-run with every PEFT scaling set by hand (x scale, except the unscaled modules) and no runtime scale;
    must reproduce diffusers' scaled run exactly (documents where the scale reaches)."""
    layers = _peft_lora_layers(model)
    saved = {n: dict(m.scaling) for n, m in layers.items()}
    try:
        for n, m in layers.items():
            f = 1.0 if _peft_unscaled(n) else case.lora.scale
            for k in m.scaling:
                m.scaling[k] = saved[n][k] * f
        out2 = _run(model, inputs)
    finally:
        for n, m in layers.items():
            m.scaling.update(saved[n])
    diff = (out - out2).abs().max().item()
    if diff != 0.0:
        raise RuntimeError(f"{case.name}: the documented LoRA scale rule does not reproduce diffusers ({diff})")
    return diff


# --------------------------------------------------------------------------------------------------
# Published UNet2DConditionModel layouts (configs only: no weights, no outputs) -> <out>/unet2dcond_configs
# --------------------------------------------------------------------------------------------------
CONFIGS_DIR = "unet2dcond_configs"

_SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
_SD15 = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": _SD_DOWN,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": _SD_UP,
}
_SD21 = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.10.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": _SD_DOWN,
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": _SD_UP,
    "upcast_attention": True,
    "use_linear_projection": True,
}
_SDXL_COMMON = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.19.0.dev0",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_norm": None,
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "upcast_attention": None,
    "use_linear_projection": True,
}
_SDXL_BASE = dict(
    _SDXL_COMMON,
    attention_head_dim=[5, 10, 20],
    block_out_channels=[320, 640, 1280],
    cross_attention_dim=2048,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    projection_class_embeddings_input_dim=2816,
    transformer_layers_per_block=[1, 2, 10],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
)
_SDXL_REFINER = dict(
    _SDXL_COMMON,
    attention_head_dim=[6, 12, 24, 24],
    block_out_channels=[384, 768, 1536, 1536],
    cross_attention_dim=1280,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    projection_class_embeddings_input_dim=2560,
    transformer_layers_per_block=4,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
)
_LCM_SDXL = dict(_SDXL_BASE, _diffusers_version="0.23.0.dev0", time_cond_proj_dim=256)

# name -> (hub repo/subfolder, config as published, fields written from memory / not seen verbatim)
REAL_CONFIGS: Dict[str, Tuple[str, dict, List[str]]] = {
    "sd15": ("runwayml/stable-diffusion-v1-5 unet/config.json", _SD15, ["_diffusers_version"]),
    "sd21_768": (
        "stabilityai/stable-diffusion-2-1 unet/config.json",
        _SD21,
        ["_diffusers_version", "presence of dual_cross_attention/num_class_embeds/only_cross_attention keys"],
    ),
    "sdxl_base": (
        "stabilityai/stable-diffusion-xl-base-1.0 unet/config.json",
        _SDXL_BASE,
        ["_diffusers_version", "upcast_attention null (vs false)", "the full set of null-valued keys"],
    ),
    "sdxl_refiner": (
        "stabilityai/stable-diffusion-xl-refiner-1.0 unet/config.json",
        _SDXL_REFINER,
        [
            "_diffusers_version",
            "transformer_layers_per_block 4 (cut off in the map's excerpt; 4 from memory)",
            "upcast_attention null",
            "the full set of null-valued keys",
        ],
    ),
    "lcm_sdxl": (
        "latent-consistency/lcm-sdxl config.json",
        _LCM_SDXL,
        ["_diffusers_version", "everything except time_cond_proj_dim 256 is assumed identical to SDXL base"],
    ),
}


def _count_params_without_init(config: dict) -> int:
    """Instantiate UNet2DConditionModel.from_config(config) with the layers' random initialisation
    skipped (the count does not depend on it; a 2.6B-parameter init is slow) and count parameters."""
    classes = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding)
    saved = {c: c.reset_parameters for c in classes}
    try:
        for c in classes:
            c.reset_parameters = lambda self: None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = diffusers.UNet2DConditionModel.from_config(config)
        unused = sorted(set(config) - set(model.config) - {"_class_name", "_diffusers_version"})
        if unused:
            raise RuntimeError(f"config keys diffusers {diffusers.__version__} ignores: {unused}")
        n = sum(p.numel() for p in model.parameters())
        del model
        return n
    finally:
        for c, f in saved.items():
            c.reset_parameters = f


def write_real_configs(out_root: str) -> None:
    root = os.path.join(out_root, CONFIGS_DIR)
    os.makedirs(root, exist_ok=True)
    rows = []
    for name, (source, config, unsure) in REAL_CONFIGS.items():
        n = _count_params_without_init(config)
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        rows.append((name, source, n, unsure))
        print(f"  {CONFIGS_DIR}/{name}: {n} parameters ({n / 1e6:.2f} M)")
    lines = [
        "# Published `UNet2DConditionModel` layouts (configs only)",
        "",
        "Generated by `tools/make_fixtures.py` (do not edit by hand). No weights and no expected outputs: these "
        "are the `unet/config.json` files of real checkpoints, for testing config parsing, model construction "
        "(parameter count, memory planning) and benchmarks at real sizes. Each was written from the map "
        "(/work/shared/diffusers-unets.md §6.3) and from memory of the hub files and diffusers' conversion "
        "scripts, and each was instantiated with "
        f"`UNet2DConditionModel.from_config` of diffusers {EXPECTED_DIFFUSERS_VERSION} (no unknown keys; weights "
        "neither initialised nor saved) to prove diffusers accepts it.",
        "",
        "| name | published as | parameters | not seen verbatim (written from memory) |",
        "|---|---|---|---|",
    ]
    for name, source, n, unsure in rows:
        lines.append(f"| `{name}` | {source} | {n:,} | {'; '.join(unsure)} |")
    lines.append("")
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write("\n".join(lines))


FAMILIES: Dict[str, List[Case]] = {
    "unet2d": UNET2D_CASES,
    "unet1d": UNET1D_CASES,
    "unet2dcond": UNET2DCOND_CASES,
    # later: "unet3d_condition": ..., "unet_motion": ...
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


def _flatten_inputs(inputs: Dict[str, Any]) -> Dict[str, Any]:
    """forward() kwargs -> stored names: a dict argument's entries as `arg.key`, a list/tuple argument's
    entries as `arg.0`, `arg.1`, ... (one level; everything else unchanged)."""
    flat: Dict[str, Any] = {}
    for k, v in inputs.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                flat[f"{k}.{kk}"] = vv
        elif isinstance(v, (list, tuple)):
            for i, vv in enumerate(v):
                flat[f"{k}.{i}"] = vv
        else:
            flat[k] = v
    return flat


def _nest_inputs(flat: Dict[str, Any]) -> Dict[str, Any]:
    """Inverse of _flatten_inputs; `arg.<int>` entries become a NEW list each call (diffusers pops from
    down_intrablock_additional_residuals), `arg.<name>` entries a dict."""
    out: Dict[str, Any] = {}
    lists: Dict[str, Dict[int, Any]] = {}
    for k, v in flat.items():
        if "." not in k:
            out[k] = v
            continue
        arg, sub = k.split(".", 1)
        if sub.isdigit():
            lists.setdefault(arg, {})[int(sub)] = v
        else:
            out.setdefault(arg, {})[sub] = v
    for arg, items in lists.items():
        if sorted(items) != list(range(len(items))):
            raise RuntimeError(f"input list {arg}: indices {sorted(items)} are not 0..n-1")
        out[arg] = [items[i] for i in range(len(items))]
    return out


def _python_number_as_tensor(v, rule: str) -> torch.Tensor:
    if rule == "long":
        return torch.tensor([v], dtype=torch.long)
    if rule == "typed":
        return torch.tensor([v], dtype=torch.float64 if isinstance(v, float) else torch.int64)
    raise ValueError(rule)


def _python_number_rule(v, rule: str) -> str:
    if rule == "long":
        return f"torch.tensor([{int(v)}], dtype=torch.long)"
    return f"torch.tensor([{v!r}], dtype=torch.{'float64' if isinstance(v, float) else 'int64'})"


def _run(model, inputs, **call_kwargs):
    kwargs = _nest_inputs(inputs)
    with torch.no_grad():
        out = model(**kwargs, **call_kwargs, return_dict=True).sample
    # UNet2DConditionModel pops the T2I-Adapter residuals it uses; one left over was silently ignored
    if kwargs.get("down_intrablock_additional_residuals"):
        raise RuntimeError(
            f"{len(kwargs['down_intrablock_additional_residuals'])} down_intrablock_additional_residuals unused"
        )
    return out


def _tensor_info(t: torch.Tensor) -> dict:
    return {"dtype": SAFETENSORS_DTYPE_NAMES[t.dtype], "shape": list(t.shape)}


def _reference_model_from_file(case: Case, model_cls, config, weights_path: str, aliases, attn_paths):
    """The model built from config and loaded with exactly the stored weight values (storage dtype)."""
    storage_dtype = STORAGE_DTYPES[case.weights_dtype]
    stored = safetensors.torch.load_file(weights_path)
    for k, v in stored.items():
        if v.dtype != storage_dtype:
            raise RuntimeError(f"{case.name}: stored {k} as {v.dtype}, wanted {storage_dtype}")
    if case.deprecated_attention_names:
        if any(".to_q." in k or ".to_out.0." in k for k in stored if any(k.startswith(p + ".") for p in attn_paths)):
            raise RuntimeError(f"{case.name}: new-style attention names left in the file")
        stored = rename_from_deprecated(stored, attn_paths)
    torch.manual_seed(case.seed)
    ref_model = model_cls.from_config(config)
    if case.model_patch is not None:
        case.model_patch(ref_model, case)
    missing, unexpected = ref_model.load_state_dict(stored, strict=False)
    if unexpected or set(missing) - set(aliases):
        raise RuntimeError(f"{case.name}: load mismatch: missing {missing}, unexpected {unexpected}")
    return ref_model


def peft_backend_active() -> bool:
    """diffusers' USE_PEFT_BACKEND (true when peft >= 0.6 and transformers >= 4.34 are importable)."""
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)


def make_case(case: Case, out_root: str) -> dict:
    if peft_backend_active() != case.needs_peft_backend:
        raise RuntimeError(
            f"{case.name}: needs diffusers' {'PEFT' if case.needs_peft_backend else 'non-PEFT'} path, but this "
            f"interpreter has USE_PEFT_BACKEND={peft_backend_active()} (see the header: {PEFT_PYTHON_ENV})"
        )
    shim = case.shim() if case.shim is not None else contextlib.nullcontext()
    with shim:
        return _make_case(case, out_root)


def _make_case(case: Case, out_root: str) -> dict:
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
        ref_model = _reference_model_from_file(case, model_cls, model.config, weights_path, aliases, attn_paths)
        ref_model = ref_model.to(ref_dtype).eval()

        inputs = _flatten_inputs(case.make_inputs(torch.Generator().manual_seed(case.seed * 31 + 5)))
        if inputs["sample"].dtype != torch.float32:
            raise RuntimeError("sample must be stored as F32")
        stored_inputs, python_scalars = _stored_inputs(inputs)
        ref_inputs = _to_reference(inputs, ref_dtype)

        # 3b. things that are not forward() arguments (meta.json "apply"): FreeU, LoRA
        apply_meta: Dict[str, Any] = {}
        apply_info: Dict[str, Any] = {}
        call_kwargs: Dict[str, Any] = {}
        if case.lora is not None:
            base_out = _run(ref_model, ref_inputs)
            apply_info = write_lora_files(case, ref_model, tmp)
            apply_lora(ref_model, case, tmp, apply_info)
            apply_meta["lora"] = case.lora.apply_meta()
            if not case.lora.fused:
                call_kwargs = {"cross_attention_kwargs": {"scale": case.lora.scale}}
            if case.needs_peft_backend:
                lora_out = _run(ref_model, ref_inputs, **call_kwargs)
                apply_info["scale_rule_check_max_abs_diff"] = peft_scale_rule_check(ref_model, case, ref_inputs,
                                                                                    lora_out)
        if case.freeu is not None:
            ref_model.enable_freeu(**case.freeu)
            apply_meta["freeu"] = dict(case.freeu)

        out = _run(ref_model, ref_inputs, **call_kwargs)
        if out.dtype != ref_dtype:
            raise RuntimeError(f"{case.name}: output dtype {out.dtype}, expected {ref_dtype}")
        if not torch.isfinite(out).all():
            raise RuntimeError(f"{case.name}: non-finite reference output")
        if case.lora is not None:
            rel = ((out - base_out).norm() / base_out.norm()).item()
            apply_info["relative_change_vs_no_lora"] = rel
            if rel < 0.05:
                raise RuntimeError(f"{case.name}: LoRA changes the output too little (relative change {rel:.4f})")
            if case.lora.fused:
                # the same LoRA unfused, at the same scale, for comparison (informative)
                unfused = _reference_model_from_file(case, model_cls, model.config, weights_path, aliases, attn_paths)
                unfused = unfused.to(ref_dtype).eval()
                apply_lora(unfused, dataclasses.replace(case, lora=dataclasses.replace(case.lora, fused=False)), tmp,
                           apply_info)
                out_unfused = _run(unfused, ref_inputs, cross_attention_kwargs={"scale": case.lora.scale})
                apply_info["fused_vs_unfused_max_abs_diff"] = (out - out_unfused).abs().max().item()
                apply_info["fused_vs_unfused_relative_diff"] = (
                    (out - out_unfused).norm() / out_unfused.norm()
                ).item()
        if python_scalars:
            # sanity check of the documented convention for Python numbers
            as_tensor = dict(ref_inputs)
            for k in python_scalars:
                as_tensor[k] = _python_number_as_tensor(inputs[k], case.python_numbers)
            if not torch.equal(out, _run(ref_model, as_tensor, **call_kwargs)):
                raise RuntimeError(
                    f"{case.name}: Python-number argument does not act as "
                    f"{_python_number_rule(inputs[python_scalars[0]], case.python_numbers)}"
                )

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
        if case.lora is not None:
            apply_lora(loaded, case, tmp, {})
        if case.freeu is not None:
            loaded.enable_freeu(**case.freeu)
        out2 = _run(loaded, _to_reference(inputs, ref_dtype), **call_kwargs)
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
                    "diffusers_uses": _python_number_rule(inputs[k], case.python_numbers),
                }
                for k in python_scalars
            }
        if apply_meta:
            meta["apply"] = apply_meta
        if apply_info:
            meta["apply_details"] = {k: v for k, v in apply_info.items() if not k.startswith("_")}
        if fixed_buffers:
            meta["fixed_buffers_not_randomized"] = fixed_buffers
        if case.extra_config:
            meta["extra_config_keys"] = case.extra_config
        if case.shim_description:
            meta["reference_shim"] = case.shim_description
        if case.needs_peft_backend:
            import peft
            import transformers

            meta["generated_with"]["peft"] = peft.__version__
            meta["generated_with"]["transformers"] = transformers.__version__
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
    inputs = _flatten_inputs(case.make_inputs(torch.Generator().manual_seed(0)))
    parts = []
    for k, v in inputs.items():
        if _is_python_number(v):
            stored = "F64" if isinstance(v, float) else "I64"
            parts.append(f"`{k}` Python {type(v).__name__} {v!r} (stored {stored} 0-d, python_scalars)")
        else:
            parts.append(f"`{k}` {SAFETENSORS_DTYPE_NAMES[v.dtype]} {tuple(v.shape) if v.dim() else '0-d'}")
    return ", ".join(parts)


DEFAULT_README_INPUT_NAMES = "`sample`, `timestep`, `class_labels` when used"
FAMILY_README_INPUT_NAMES: Dict[str, str] = {
    "unet2dcond": (
        "`sample`, `timestep`, `encoder_hidden_states` and, when used, `class_labels`, `timestep_cond`, "
        "`attention_mask`, `encoder_attention_mask`, `added_cond_kwargs.<key>`, "
        "`down_block_additional_residuals.<i>`, `mid_block_additional_residual`, "
        "`down_intrablock_additional_residuals.<i>`"
    ),
}

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
    "unet2dcond": [
        "UNet2DConditionModel specifics:",
        "",
        "- Input names: forward() argument names; dict arguments flattened as `added_cond_kwargs.text_embeds`, "
        "`added_cond_kwargs.time_ids`; list arguments as `down_block_additional_residuals.0` ... (index order), "
        "`down_intrablock_additional_residuals.0` ...; `mid_block_additional_residual` as is. Masks are stored as "
        "given (0/1 in I64 or F32; diffusers converts them to `(1-m)*-10000` biases in the model dtype).",
        "- Python-number timesteps are NOT truncated here: a Python float becomes `torch.tensor([t], "
        "dtype=torch.float64)`, an int `torch.tensor([t], dtype=torch.int64)`. Stored as 0-d F64/I64 with "
        "safetensors metadata `{\"python_scalars\": \"timestep\"}` as in the other families.",
        "- `meta.json` `apply`: things that are not forward() arguments, to replay through the API before the run: "
        "`{\"freeu\": {\"s1\", \"s2\", \"b1\", \"b2\"}}` (unet.enable_freeu) and `{\"lora\": {\"file\", "
        "\"format\": \"diffusers\"|\"kohya\"|\"peft\", \"scale\", \"fused\"}}` (+ `\"backend\": \"peft\"` when "
        "diffusers loaded it through its PEFT backend; the LoRA file is in the case folder; "
        "scale is cross_attention_kwargs={\"scale\": s}, or fuse_lora(lora_scale=s) when fused). "
        "`apply_details` lists the layers that received a LoRA, the alphas, the relative change of the output "
        "against the model without LoRA, and for fused cases the difference to the unfused run.",
        "- Every reference is float64 (no configuration here needed float32: unlike UNet2DModel, the conditional "
        "model casts the class-\"timestep\" sinusoid and the text_time embeddings to the model dtype). Still "
        "float32 inside a float64 run: the sinusoidal projections (time, class timestep, add_time_proj), the "
        "attention scores+softmax when upcast_attention is true, the FreeU FFT filter when H or W of the skip is "
        "not a power of two, and fuse_lora's W + s*up@down.",
        "- LoRA, non-PEFT path (every LoRA case except lora_peft; peft/transformers not importable): LoRA attaches to LoRACompatibleLinear/Conv layers only "
        "(attention q/k/v/out and add_k/add_v, GEGLU proj and FF out, proj_in/proj_out, resnet conv1/conv2/"
        "conv_shortcut/time_emb_proj, sampler convs, TimestepEmbedding linear_1/linear_2); conv_in/conv_out, "
        "encoder_hid_proj, cond_proj, norms cannot take one. The scale reaches every LoRA except "
        "time_embedding.linear_1/2 (called without scale => always 1.0 unfused, but fuse_lora scales it, so "
        "fused != unfused whenever the time embedding has a LoRA). A diffusers-format file carries no alphas in "
        "0.26.3 (an `.alpha` key breaks load_attn_procs); kohya files do (`.alpha` per module, factor alpha/rank) "
        "but cannot address time_embedding. PEFT-format keys (`lora_A`/`lora_B`) are not loadable without peft "
        "in 0.26.3 (KeyError 'lora.down.weight'). `lora_diffusers/lora_nomatch.safetensors` holds keys for "
        "non-existent modules; diffusers raises AttributeError (see its meta `apply_details.nomatch_error`); "
        "a file with only `text_encoder.*` keys, by contrast, loads silently onto no layer.",
        "- LoRA, PEFT path (`lora_peft`, generated with peft 0.9.0 + transformers 4.38.2 importable, which switches "
        "diffusers 0.26.3 to its PEFT backend): the file's `unet.<module>.lora_A.weight`/`lora_B.weight` keys may "
        "name any nn.Linear/nn.Conv2d (conv_in and conv_out included). Ranks come from the shapes; no alphas are "
        "stored or read (network_alphas only ever come from kohya `.alpha` keys; a PEFT adapter_config is not "
        "read), so diffusers' get_peft_kwargs takes lora_alpha = the rank of the first lora_B key in (sorted) "
        "state-dict order and each layer's scaling = lora_alpha / its rank (1.0 everywhere only when all ranks "
        "are equal). The runtime scale multiplies every PEFT layer from the down blocks through conv_out; "
        "conv_in and the time/class/added embeddings (and encoder_hid_proj) run before scale_lora_layers, i.e. "
        "unscaled, as in the non-PEFT path. Per-layer rank/scaling in `lora_peft/meta.json` apply_details.",
        "- `reference_shim` in meta.json (only `dual_cross_attention`): a minimal documented patch without which "
        "diffusers 0.26.3 cannot run the configuration; the math is diffusers' own.",
        "- Observed in 0.26.3: dual_cross_attention true cannot run unpatched (every CrossAttn block "
        "passes encoder_attention_mask= to DualTransformer2DModel.forward, which has no such parameter: "
        "TypeError, with or without a mask; the `dual_cross_attention` fixture uses a shim that accepts and drops "
        "encoder_attention_mask=None, see its reference_shim). No fixture: AttnDownBlock2D fails (its forward rejects scale=); "
        "norm_num_groups null fails at construction for every standard/Simple block (GroupNorm(None)) and only "
        "works with the K blocks (k_upscaler); AttnUpBlock2D ignores upsample_size (odd latent sizes fail at the "
        "skip concatenation); attention_mask reaches attn1 (self-attention) of transformer blocks and fails "
        "unless its length equals H*W at every transformer that gets it (prepare_attention_mask pads by "
        "target_length, not by the difference), except with only_cross_attention where attn1 attends to the "
        "encoder tokens; in SimpleCrossAttn blocks attention_mask (if given) replaces encoder_attention_mask as "
        "the cross mask, and with only_cross_attention true any encoder mask fails (padded to 9 + H*W keys); "
        "K up blocks recognise the first up block by in == out == temb channels (k_upscaler covers that one; "
        "k_upscaler_noattn the 'middle' (in != out) and in == out != temb variants and KCrossAttnDownBlock2D "
        "without self-attention).",
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
        "(weights in the case's storage dtype), `inputs.safetensors` (forward() arguments by name: "
        f"{FAMILY_README_INPUT_NAMES.get(family, DEFAULT_README_INPUT_NAMES)}), `expected.safetensors` (`sample`: "
        "diffusers' output, F64) and `meta.json`.",
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
        if c.freeu is not None or c.lora is not None:
            apply = {}
            if c.lora is not None:
                apply["lora"] = c.lora.apply_meta()
            if c.freeu is not None:
                apply["freeu"] = c.freeu
            lines += [f"meta.json `apply`: `{json.dumps(apply)}`", ""]
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
        unknown = names - {c.name for c in all_cases} - set(FAMILIES) - {CONFIGS_DIR}
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

    # PEFT cases run in the PEFT interpreter (child process), everything else here (see the header)
    peft_here = peft_backend_active()
    delegated: List[Case] = []
    if peft_here:
        wrong = [c.name for c in selected if not c.needs_peft_backend]
        if wrong:
            sys.exit(
                f"this interpreter has diffusers' PEFT backend (peft + transformers importable), which changes the "
                f"non-PEFT cases; it can only make {[c.name for c in all_cases if c.needs_peft_backend]}, not {wrong}"
            )
    else:
        delegated = [c for c in selected if c.needs_peft_backend]
        if delegated and not os.environ.get(PEFT_PYTHON_ENV):
            sys.exit(
                f"{[c.name for c in delegated]} need diffusers' PEFT backend: set {PEFT_PYTHON_ENV} to a Python that "
                f"sees this torch/diffusers plus peft and transformers (see the header of {__file__}), or leave them "
                f"out with --only"
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
            if case not in delegated:
                make_case(case, args.out)
        write_family_readme(family, cases, args.out)

    if delegated:
        cmd = [os.environ[PEFT_PYTHON_ENV], os.path.abspath(__file__), "--out", os.path.abspath(args.out),
               "--only"] + [c.name for c in delegated]
        print(f"PEFT cases in {cmd[0]}: {' '.join(cmd[1:])}", flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            sys.exit(f"the PEFT interpreter failed (exit {rc})")

    if not args.only or CONFIGS_DIR in args.only:
        write_real_configs(args.out)

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
