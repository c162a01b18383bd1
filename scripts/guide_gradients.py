#!/usr/bin/env python3
"""Write the guide's `parameters` and `grads` dicts as .npz files, for
`rain check --params P.npz --grads G.npz`.

This is the guide's numpy network ("deep neural networks from scratch"):
ReLU hidden layers, a sigmoid output, mean cross-entropy, and its
hand-derived backward pass. Replace `backward` with yours (or import your
own module) to check your backprop against tapegrad's autodiff and finite
differences:

    python3 scripts/guide_gradients.py --out /tmp/mine
    cargo run --release -p rain -- check --params /tmp/mine/params.npz --grads /tmp/mine/grads.npz

With --mistake it plants one of the classic mistakes in the backward pass
(the test fixtures in tests/fixtures/gradients/ were written this way, so
that the tests never run Python):

    db_without_mean     db = np.sum(dZ, axis=1, keepdims=True), without 1/m
    relu_prime_at_zero  relu'(0) = 1: dZ = dA * (Z >= 0)
    transposed_dw       dW = A_prev dZ^T / m for the square layer W2

The data is synthetic (3 features, 64 examples, seeded) plus one example
with every feature 0: with the guide's zero biases its pre-activations are
exactly 0, on relu's kink, where relu'(0) matters. It is saved with the
parameters as X and Y, so the check computes on the same examples.

Needs numpy only.
"""

import argparse
import os

import numpy as np

MISTAKES = ("db_without_mean", "relu_prime_at_zero", "transposed_dw")


def initialize_parameters(layer_dims, rng, dtype):
    """The guide's initialisation, scaled for ReLU: W ~ N(0, 2 / n_prev), b = 0."""
    parameters = {}
    for l in range(1, len(layer_dims)):
        n, n_prev = layer_dims[l], layer_dims[l - 1]
        parameters["W" + str(l)] = (rng.standard_normal((n, n_prev)) * np.sqrt(2.0 / n_prev)).astype(dtype)
        parameters["b" + str(l)] = np.zeros((n, 1), dtype=dtype)
    return parameters


def forward(X, parameters):
    """Z[l] = W[l] A[l-1] + b[l]; relu hidden, sigmoid output. Returns AL and the caches."""
    L = len(parameters) // 2
    A, caches = X, []
    for l in range(1, L + 1):
        W, b = parameters["W" + str(l)], parameters["b" + str(l)]
        Z = W @ A + b
        caches.append((A, W, Z))
        A = np.maximum(0, Z) if l < L else 1 / (1 + np.exp(-Z))
    return A, caches


def backward(AL, Y, caches, mistake=None):
    """The guide's backward pass, with one planted mistake if asked."""
    grads = {}
    L = len(caches)
    m = Y.shape[1]
    dZ = AL - Y  # sigmoid output with cross-entropy
    for l in range(L, 0, -1):
        A_prev, W, Z = caches[l - 1]
        if l < L:
            dA = grads["dA" + str(l)]
            if mistake == "relu_prime_at_zero":
                dZ = dA * (Z >= 0)
            else:
                dZ = dA * (Z > 0)  # relu'(z) = 0 for z <= 0
        if mistake == "transposed_dw" and W.shape[0] == W.shape[1]:
            grads["dW" + str(l)] = A_prev @ dZ.T / m
        else:
            grads["dW" + str(l)] = dZ @ A_prev.T / m
        if mistake == "db_without_mean":
            grads["db" + str(l)] = np.sum(dZ, axis=1, keepdims=True)
        else:
            grads["db" + str(l)] = np.sum(dZ, axis=1, keepdims=True) / m
        grads["dA" + str(l - 1)] = W.T @ dZ
    return grads


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for params.npz and grads.npz")
    p.add_argument("--mistake", choices=MISTAKES, help="plant a classic mistake in the backward pass")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--layers", default="3,4,4,1", help="layer sizes n0,n1,...,nL (default 3,4,4,1)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    dims = [int(v) for v in args.layers.split(",")]
    rng = np.random.default_rng(args.seed)
    dtype = np.dtype(args.dtype)
    X = rng.standard_normal((dims[0], 64))
    X = np.concatenate([X, np.zeros((dims[0], 1))], axis=1).astype(dtype)
    Y = ((X[0] + 0.5 * X[1 % dims[0]] - X[-1] + 0.3 * rng.standard_normal(X.shape[1])) > 0)
    Y = Y.astype(dtype).reshape(1, -1)
    parameters = initialize_parameters(dims, rng, dtype)
    AL, caches = forward(X, parameters)
    grads = backward(AL, Y, caches, args.mistake)

    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, "params.npz"), **parameters, X=X, Y=Y)
    np.savez(os.path.join(args.out, "grads.npz"), **grads)
    print(f"wrote {args.out}/params.npz and grads.npz ({args.dtype}, layers {dims}, mistake: {args.mistake})")


if __name__ == "__main__":
    main()
