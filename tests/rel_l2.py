#!/usr/bin/env python3
"""Relative L2 error of tensor `sample` in OUT against EXPECTED (safetensors,
F32 or F64), for the command-line tests: prints it, exits 1 above TOL.
Usage: rel_l2.py OUT EXPECTED [TOL]"""
import json
import math
import struct
import sys


def sample(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(data[8:8 + n])["sample"]
    fmt = {"F32": "f", "F64": "d"}[meta["dtype"]]
    a, b = meta["data_offsets"]
    raw = data[8 + n + a:8 + n + b]
    return struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)


got, ref = sample(sys.argv[1]), sample(sys.argv[2])
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
if len(got) != len(ref):
    sys.exit("rel_l2: %d values against %d" % (len(got), len(ref)))
num = sum((g - r) ** 2 for g, r in zip(got, ref))
den = sum(r * r for r in ref)
err = math.sqrt(num / den) if den > 0 else math.sqrt(num)
print("%.3g" % err)
sys.exit(0 if err <= tol else 1)
