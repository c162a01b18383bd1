#!/usr/bin/env python3
"""Loads a `rain export` safetensors file into torch.nn.Sequential and
compares its probabilities with `rain predict`'s on the same CSV.

    rain export --model rain-out/model.json --safetensors m.safetensors
    rain predict --model rain-out/model.json --data data.csv --out preds.csv
    python3 scripts/check_export.py m.safetensors data.csv preds.csv

Needs torch, safetensors and numpy (never run in CI). Built-in activations
only; a formula activation is reported and skipped.
"""
import csv
import json
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "swish": torch.nn.SiLU,
    "silu": torch.nn.SiLU,
    "gelu": torch.nn.GELU,
    "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"),
    "mish": torch.nn.Mish,
    "softplus": torch.nn.Softplus,
    "selu": torch.nn.SELU,
    "hardswish": torch.nn.Hardswish,
    "log_sigmoid": torch.nn.LogSigmoid,
    "identity": torch.nn.Identity,
}


def main(st_path, data_path, preds_path):
    with safe_open(st_path, framework="pt") as f:
        meta = f.metadata()
    acts = meta["activations"].split(",")
    unknown = [a for a in acts if a not in ACTIVATIONS]
    if unknown:
        print(f"skipped: no torch module for activation(s) {unknown}")
        return 0
    state = load_file(st_path)
    modules = []
    for i, a in enumerate(acts):
        w = state[f"{2 * i}.weight"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
        modules += [lin, ACTIVATIONS[a]()]
    net = torch.nn.Sequential(*modules)
    net.load_state_dict(state)
    stdz = json.loads(meta["standardization"])
    with open(data_path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(preds_path, newline="") as f:
        preds = list(csv.DictReader(f))
    x, p_rain = [], []
    for r, p in zip(rows, preds):
        if p["probability"] == "":
            continue
        x.append([float(r[c]) for c in stdz["features"]])
        p_rain.append(float(p["probability"]))
    x = (np.array(x) - np.array(stdz["mean"])) / np.array(stdz["std"])
    with torch.no_grad():
        p_torch = net(torch.tensor(x, dtype=state["0.weight"].dtype)).numpy()[:, 0]
    err = np.max(np.abs(p_torch - np.array(p_rain)))
    print(f"{len(p_rain)} rows, activations {acts}, dtype {state['0.weight'].dtype}: max |torch - rain| = {err:.3e}")
    return 0 if err < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
