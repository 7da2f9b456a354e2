#!/usr/bin/env python3
"""Times clunet and diffusers + torch on the same model config, interleaved,
and prints the ratio. The machine's speed moves from minute to minute, so the
two are measured in alternating rounds and the ratio is taken per round.

    /usr/bin/python3 tools/bench_torch.py --model tools/configs/ddpm-cifar10-32 \
        [--clunet build/clunet] [--batch 1 --height 32 --width 32] [--rounds 5 --runs 5]

Needs diffusers 0.26.3 and torch for /usr/bin/python3 (see DEVELOPERS.md), and
OpenBLAS as the system BLAS (Debian's torch uses it for matrix products and for
the convolutions oneDNN does not take; the reference BLAS is ~10x slower).
torch runs in a subprocess with OPENBLAS_CORETYPE=SkylakeX set for it only
(Haswell on a CPU without AVX-512, where the SkylakeX kernels die of SIGILL),
with as many threads as the machine has cores, on random weights in float32.
clunet runs `clunet bench --json` (which also measures the device's FMA peak).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def openblas_coretype():
    """SkylakeX (AVX-512) where the CPU has it, else Haswell (AVX2)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        flags = ""
    return "SkylakeX" if " avx512f" in flags else "Haswell"


def torch_worker(args):
    import torch
    import diffusers

    torch.set_num_threads(os.cpu_count())
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    cls = getattr(diffusers, cfg["_class_name"])
    torch.manual_seed(0)
    model = cls.from_config(cfg).eval()
    kwargs = {}
    if cfg["_class_name"] == "UNet1DModel":
        sample = torch.randn(args.batch, cfg.get("in_channels", 2), args.length)
        t = torch.tensor([10.0 if cfg.get("use_timestep_embedding") else 0.5] * args.batch)
    elif cfg["_class_name"] == "UNet2DConditionModel":
        sample = torch.randn(args.batch, cfg.get("in_channels", 4), args.height, args.width)
        t = torch.tensor([999.0] * args.batch)
        cross = cfg.get("encoder_hid_dim") or cfg.get("cross_attention_dim", 1280)
        if isinstance(cross, list):
            cross = cross[-1]
        kwargs["encoder_hidden_states"] = torch.randn(args.batch, args.tokens, cross)
        if cfg.get("addition_embed_type") == "text_time":
            n_ids = 6
            while n_ids > 1 and cfg["projection_class_embeddings_input_dim"] - n_ids * cfg["addition_time_embed_dim"] <= 0:
                n_ids -= 1
            width = cfg["projection_class_embeddings_input_dim"] - n_ids * cfg["addition_time_embed_dim"]
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(args.batch, width),
                                           "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024][:n_ids]] * args.batch)}
        if cfg.get("time_cond_proj_dim"):
            kwargs["timestep_cond"] = torch.randn(args.batch, cfg["time_cond_proj_dim"])
    else:
        sample = torch.randn(args.batch, cfg.get("in_channels", 3), args.height, args.width)
        t = torch.tensor([10.0] * args.batch)
        if cfg.get("num_class_embeds") or cfg.get("class_embed_type"):
            kwargs["class_labels"] = torch.zeros(args.batch, dtype=torch.long)
    times = []
    import resource
    import time

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    rss0, max0 = rss_kib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        model(sample, t, **kwargs)  # warm-up; its memory peak is torch's activation peak
        max1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # growth of the process's peak resident memory over what it held before the forward
        # (weights, inputs): activations and workspaces; hidden (None) if construction peaked higher
        peak_mib = (max1 - rss0) / 1024 if max1 > max0 else None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model(sample, t, **kwargs)
            times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": statistics.median(times), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "peak_mib": peak_mib}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--clunet", default="build/clunet")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--length", type=int, default=65536, help="1-D models")
    p.add_argument("--tokens", type=int, default=77, help="encoder tokens (conditional models)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--torch-worker", action="store_true")
    args = p.parse_args()
    if args.torch_worker:
        return torch_worker(args)

    blas = os.path.realpath("/etc/alternatives/libblas.so.3-x86_64-linux-gnu")
    if "openblas" not in blas:
        print("warning: torch's BLAS is %s, not OpenBLAS: torch will be far slower than it can be "
              "(apt-get install libopenblas0-pthread)" % blas, file=sys.stderr)
    rows = []
    cls = json.load(open(os.path.join(args.model, "config.json")))["_class_name"]
    length = args.tokens if cls == "UNet2DConditionModel" else args.length
    for r in range(args.rounds):
        c = subprocess.run([args.clunet, "bench", "--model", args.model, "--batch", str(args.batch),
                            "--height", str(args.height), "--width", str(args.width),
                            "--length", str(length), "--runs", str(args.runs), "--json"],
                           check=True, capture_output=True, text=True)
        cj = json.loads(c.stdout)
        env = dict(os.environ, OPENBLAS_CORETYPE=openblas_coretype())
        t = subprocess.run([sys.executable, __file__, "--torch-worker", "--model", args.model,
                            "--batch", str(args.batch), "--height", str(args.height),
                            "--width", str(args.width), "--length", str(args.length),
                            "--tokens", str(args.tokens), "--runs", str(args.runs)],
                           check=True, capture_output=True, text=True, env=env)
        tj = json.loads(t.stdout.strip().splitlines()[-1])
        rows.append((cj, tj))
        print("round %d: clunet %.4f s (%.1f GFLOP/s, %.1f %% of peak %.0f)  torch %s %.4f s  "
              "ratio %.2f" % (r + 1, cj["median_s"], cj["gflops"], cj["percent_of_peak"],
                              cj["device_peak_gflops"], tj["torch"], tj["median_s"],
                              cj["median_s"] / tj["median_s"]), flush=True)
    ratios = [c["median_s"] / t["median_s"] for c, t in rows]
    c_med = statistics.median(c["median_s"] for c, _ in rows)
    t_med = statistics.median(t["median_s"] for _, t in rows)
    print("median over %d rounds: clunet %.4f s, torch %.4f s, clunet/torch time ratio %.2f "
          "(per round %s); %.3f GFLOP, peak activations %.2f MiB (torch: forward's peak RSS "
          "growth %s)"
          % (len(rows), c_med, t_med, statistics.median(ratios),
             ", ".join("%.2f" % x for x in ratios), rows[0][0]["gflop"],
             rows[0][0]["peak_activation_bytes"] / 2**20,
             "%.1f MiB" % rows[0][1]["peak_mib"] if rows[0][1].get("peak_mib") is not None
             else "not measurable"))


if __name__ == "__main__":
    main()
