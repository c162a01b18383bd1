#!/usr/bin/env python3
"""Loads `rain export`'s files the way their ecosystems do, and compares
their predictions with `rain predict`'s on the same CSV:

- the ONNX file in onnxruntime (raw features in: the standardisation is in
  the graph);
- the safetensors file in torch.nn.Sequential (standardisation from the
  file's metadata).

    rain export --model rain-out/model.json --onnx m.onnx --safetensors m.safetensors
    rain predict --model rain-out/model.json --data data.csv --out preds.csv
    python3 scripts/check_export.py --data data.csv --preds preds.csv --onnx m.onnx --safetensors m.safetensors

Exit status 1 if any difference exceeds 1e-5. Needs numpy, onnxruntime,
torch and safetensors (never run in CI; the test suite checks the ONNX file
with tract, a runtime written in Rust). PyTorch has no module for a formula
activation: that file is reported and skipped.
"""
import argparse
import csv
import json
import sys

import numpy as np

TOLERANCE = 1e-5


def read(data_path, preds_path, features):
    """The raw features of the rows rain predicted, and its probabilities."""
    with open(data_path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(preds_path, newline="") as f:
        preds = list(csv.DictReader(f))
    x, p = [], []
    for r, q in zip(rows, preds):
        if q["probability"] == "":
            continue
        x.append([float(r[c]) for c in features])
        p.append(float(q["probability"]))
    return np.array(x), np.array(p)


def check_onnx(path, data, preds):
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    stdz = json.loads(meta["standardization"])
    x, p_rain = read(data, preds, stdz["features"])
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dtype = np.float32 if inp.type == "tensor(float)" else np.float64
        (p_onnx,) = sess.run(None, {inp.name: x.astype(dtype)})
    except Exception as e:  # onnxruntime lacks some float64 kernels (Erf)
        print(f"onnx {path}: onnxruntime cannot run it: {str(e).splitlines()[0]}")
        return 1
    err = np.max(np.abs(p_onnx[:, 0] - p_rain))
    print(f"onnx {path}: {len(p_rain)} rows, activations {meta['activations']}, {inp.type}: "
          f"max |onnxruntime - rain| = {err:.3e}")
    return 0 if err < TOLERANCE else 1


def check_safetensors(path, data, preds):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    modules = {
        "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
        "swish": torch.nn.SiLU, "silu": torch.nn.SiLU, "gelu": torch.nn.GELU,
        "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"), "mish": torch.nn.Mish,
        "softplus": torch.nn.Softplus, "selu": torch.nn.SELU, "hardswish": torch.nn.Hardswish,
        "log_sigmoid": torch.nn.LogSigmoid, "identity": torch.nn.Identity,
    }
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    acts = meta["activations"].split(",")
    unknown = [a for a in acts if a not in modules]
    if unknown:
        print(f"safetensors {path}: skipped, no torch module for activation(s) {unknown}")
        return 0
    state = load_file(path)
    layers = []
    for i, a in enumerate(acts):
        w = state[f"{2 * i}.weight"]
        layers += [torch.nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype), modules[a]()]
    net = torch.nn.Sequential(*layers)
    net.load_state_dict(state)
    stdz = json.loads(meta["standardization"])
    x, p_rain = read(data, preds, stdz["features"])
    x = (x - np.array(stdz["mean"])) / np.array(stdz["std"])
    with torch.no_grad():
        p_torch = net(torch.tensor(x, dtype=state["0.weight"].dtype)).numpy()[:, 0]
    err = np.max(np.abs(p_torch - p_rain))
    print(f"safetensors {path}: {len(p_rain)} rows, activations {acts}, {state['0.weight'].dtype}: "
          f"max |torch - rain| = {err:.3e}")
    return 0 if err < TOLERANCE else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--preds", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--safetensors")
    a = ap.parse_args()
    status = 0
    if a.onnx:
        status |= check_onnx(a.onnx, a.data, a.preds)
    if a.safetensors:
        status |= check_safetensors(a.safetensors, a.data, a.preds)
    return status


if __name__ == "__main__":
    sys.exit(main())
