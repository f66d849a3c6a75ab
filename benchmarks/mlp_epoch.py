"""Time an epoch of SGD on a 784-256-10 sigmoid MLP: reference miniflow against numpy and PyTorch.

Issue 2, point 5. A report, not a test: it always exits 0 unless something crashes, and prints
PASS/FAIL against the targets miniflow/numpy <= 1.10 and miniflow/torch <= 0.80.

    .venv/bin/python benchmarks/mlp_epoch.py                                # full run
    .venv/bin/python benchmarks/mlp_epoch.py --rounds 1 --samples 2000     # smoke run
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mlp_epoch.py  # busy machine

All implementations train from the same initial weights on the same batches, float32 throughout.
The machine is shared, so they run interleaved, in rotated order, over several rounds, and the
median epoch time of each is compared within this one run. When other jobs hold the cores, a
thread pool with a thread descheduled stalls at every matrix product (epochs ten or more times
slower); one thread per library keeps the comparison meaningful there.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parents[1] / "solutions" / "miniflow"
# A private name: the reference must never be importable as `miniflow` (a grading kernel would
# import it instead of the student's package).
REFERENCE_MODULE = "_miniflow_reference_benchmark"

FEATURES, HIDDEN, CLASSES = 784, 256, 10
BATCH_SIZE = 128
LEARNING_RATE = 0.1
SEED = 0
TARGET_VS_NUMPY = 1.10
TARGET_VS_TORCH = 0.80
# Both runs do the same float32 operations in nearly the same order; the tolerance allows for
# rounding differences accumulated over an epoch, not for a different algorithm.
WEIGHTS_RTOL, WEIGHTS_ATOL = 1e-4, 1e-5


def load_reference():
    """Import solutions/miniflow from its folder under a private module name."""
    spec = importlib.util.spec_from_file_location(
        REFERENCE_MODULE, REFERENCE / "__init__.py", submodule_search_locations=[str(REFERENCE)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[REFERENCE_MODULE] = module
    spec.loader.exec_module(module)
    return module


def make_data(samples, epochs):
    """Random MNIST-shaped data, initial weights and each epoch's batches, all from one seed."""
    rng = np.random.default_rng(SEED)
    images = rng.random((samples, FEATURES), dtype=np.float32)
    labels = rng.integers(0, CLASSES, samples)
    initial_weights = (
        (rng.standard_normal((FEATURES, HIDDEN), dtype=np.float32) / np.sqrt(FEATURES)).astype(np.float32),
        np.zeros(HIDDEN, dtype=np.float32),
        (rng.standard_normal((HIDDEN, CLASSES), dtype=np.float32) / np.sqrt(HIDDEN)).astype(np.float32),
        np.zeros(CLASSES, dtype=np.float32),
    )
    batches = []
    for _ in range(epochs):
        order = rng.permutation(samples)
        batches.extend(order[start : start + BATCH_SIZE] for start in range(0, samples, BATCH_SIZE))
    return images, labels, initial_weights, batches


def train_miniflow(mf, weights, images, labels, batches):
    """The way a student trains with miniflow: value_and_grad then sgd_update, batch by batch."""
    X, y = mf.Input(name="X"), mf.Input(name="y")
    W1, b1, W2, b2 = (mf.Input(name=name) for name in ("W1", "b1", "W2", "b2"))
    hidden = mf.Sigmoid(mf.Linear(X, W1, b1))
    loss = mf.CrossEntropyWithSoftmax(mf.Linear(hidden, W2, b2), y)
    trainables = [W1, b1, W2, b2]
    W1_value, b1_value, W2_value, b2_value = weights
    loss_sum = 0.0
    for batch in batches:
        feed_dict = {
            X: images[batch],
            y: labels[batch],
            W1: W1_value,
            b1: b1_value,
            W2: W2_value,
            b2: b2_value,
        }
        loss_value, _ = mf.value_and_grad(loss, feed_dict, wrt=trainables)
        mf.sgd_update(trainables, learning_rate=LEARNING_RATE)
        loss_sum += loss_value
    return [t.value for t in trainables], loss_sum / len(batches)


def train_numpy(weights, images, labels, batches):
    """The same network by hand, with the reference's sigmoid and softmax formulas."""
    W1, b1, W2, b2 = weights
    loss_sum = 0.0
    for batch in batches:
        X, y = images[batch], labels[batch]
        rows = np.arange(len(y))
        z1 = X @ W1 + b1
        h = 0.5 * (1 + np.tanh(0.5 * z1))
        z2 = h @ W2 + b2
        shifted = z2 - z2.max(axis=1, keepdims=True)
        exp_shifted = np.exp(shifted)
        row_sums = exp_shifted.sum(axis=1, keepdims=True)
        loss_sum += -(shifted[rows, y] - np.log(row_sums[:, 0])).mean()
        d_z2 = exp_shifted / row_sums
        d_z2[rows, y] -= 1
        d_z2 /= len(y)
        d_h = d_z2 @ W2.T
        d_z1 = d_h * h * (1 - h)
        # No gradient for X: nobody needs one.
        W2 -= LEARNING_RATE * (h.T @ d_z2)
        b2 -= LEARNING_RATE * d_z2.sum(axis=0)
        W1 -= LEARNING_RATE * (X.T @ d_z1)
        b1 -= LEARNING_RATE * d_z1.sum(axis=0)
    return [W1, b1, W2, b2], loss_sum / len(batches)


def train_torch(torch, weights, images, labels, batches):
    """The same network in PyTorch on CPU: autograd, torch.nn.functional, manual SGD."""
    functional = torch.nn.functional
    params = [torch.from_numpy(w).requires_grad_() for w in weights]
    W1, b1, W2, b2 = params
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    loss_sum = torch.zeros(())
    for batch in batches:
        index = torch.from_numpy(batch)
        X, y = images[index], labels[index]
        logits = torch.addmm(b2, torch.sigmoid(torch.addmm(b1, X, W1)), W2)
        loss = functional.cross_entropy(logits, y)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LEARNING_RATE * p.grad
                p.grad = None
            loss_sum += loss
    return [p.detach().numpy() for p in params], loss_sum.item() / len(batches)


def environment_report(torch):
    lines = [
        f"python {sys.version.split()[0]}, numpy {np.__version__}",
        f"cores: os.cpu_count()={os.cpu_count()}, usable by this process={len(os.sched_getaffinity(0))}",
        f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        lines.append(f"{variable}={os.environ.get(variable, '(unset)')}")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        lines.append("numpy BLAS: threadpoolctl not installed; see numpy.show_config()")
    else:
        for pool in threadpool_info():
            lines.append(
                f"thread pool: {pool['internal_api']} {pool.get('version')} "
                f"({pool.get('threading_layer', '-')}, {pool.get('architecture', '-')}): "
                f"{pool['num_threads']} threads, {Path(pool['filepath']).name}"
            )
    if torch is None:
        lines.append("torch: not importable, its comparison is skipped")
    else:
        lines.append(
            f"torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, "
            f"{torch.get_num_interop_threads()} inter-op threads"
        )
    return "\n".join(lines)


def verdict(label, medians, cpu_medians, other, target):
    ratio = medians["miniflow"] / medians[other]
    cpu_ratio = cpu_medians["miniflow"] / cpu_medians[other]
    outcome = "PASS" if ratio <= target else "FAIL"
    return f"{outcome}: {label} = {ratio:.2f} (target <= {target:.2f}; in CPU time {cpu_ratio:.2f})"


def busy_warning():
    """A warning if other work kept the cores busy, or an empty string."""
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    if load < 0.5 * cores + 1:
        return ""
    return (
        f"WARNING: the load average is {load:.1f} on {cores} cores: other jobs shared the CPU, so the "
        "wall times are unreliable, above all with multithreaded BLAS; rerun on an idle machine, or "
        "compare with OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 set."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--samples", type=int, default=60_000, help="training samples (default 60000)")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        torch = None
    mf = load_reference()
    images, labels, initial_weights, batches = make_data(args.samples, args.epochs)

    trainers = {
        "miniflow": lambda w, b: train_miniflow(mf, w, images, labels, b),
        "numpy": lambda w, b: train_numpy(w, images, labels, b),
    }
    if torch is not None:
        trainers["torch"] = lambda w, b: train_torch(torch, w, images, labels, b)

    print(environment_report(torch))
    print(
        f"\nnetwork {FEATURES}-{HIDDEN}-{CLASSES} sigmoid, softmax cross-entropy, float32; "
        f"batch {BATCH_SIZE}, learning rate {LEARNING_RATE}, {args.samples} samples, "
        f"{len(batches) // args.epochs} batches per epoch, {args.epochs} epoch(s) per run, "
        f"{args.rounds} rounds"
    )

    # Untimed warm-up: first calls pay for imports, allocator growth and BLAS thread start-up.
    for train in trainers.values():
        train([w.copy() for w in initial_weights], batches[:5])

    # Wall time is the figure that counts. Process CPU time is shown beside it because
    # it hardly moves when other jobs take turns on the cores (with one BLAS thread);
    # with more threads it also counts their spin-waiting.
    wall = {name: [] for name in trainers}
    cpu = {name: [] for name in trainers}
    results = {}
    names = list(trainers)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            weights = [w.copy() for w in initial_weights]
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            results[name] = trainers[name](weights, batches)
            wall[name].append((time.perf_counter() - wall_start) / args.epochs)
            cpu[name].append((time.process_time() - cpu_start) / args.epochs)
        timings = ", ".join(f"{n} {wall[n][-1]:.3f} s" for n in names)
        print(f"round {round_index + 1}: {timings}")

    print("\nseconds per epoch, median over rounds (wall min, max; process CPU time):")
    medians = {name: statistics.median(wall[name]) for name in names}
    cpu_medians = {name: statistics.median(cpu[name]) for name in names}
    for name in names:
        print(
            f"  {name:9s} {medians[name]:.3f}  ({min(wall[name]):.3f}, {max(wall[name]):.3f}; "
            f"cpu {cpu_medians[name]:.3f})  mean training loss {results[name][1]:.4f}"
        )

    print("\nfinal weights (W1, b1, W2, b2):")
    reference_weights = results["numpy"][0]
    for name in names:
        if name == "numpy":
            continue
        largest = max(
            float(np.max(np.abs(a - b))) for a, b in zip(results[name][0], reference_weights, strict=True)
        )
        same = all(
            np.allclose(a, b, rtol=WEIGHTS_RTOL, atol=WEIGHTS_ATOL)
            for a, b in zip(results[name][0], reference_weights, strict=True)
        )
        print(
            f"  {name} vs numpy: allclose(rtol={WEIGHTS_RTOL:g}, atol={WEIGHTS_ATOL:g}) = {same}; "
            f"largest difference {largest:.2e}"
        )

    print()
    print(verdict("miniflow/numpy", medians, cpu_medians, "numpy", TARGET_VS_NUMPY))
    if torch is None:
        print("SKIP: miniflow/torch (torch is not importable)")
    else:
        print(verdict("miniflow/torch", medians, cpu_medians, "torch", TARGET_VS_TORCH))
        print(f"      numpy/torch = {medians['numpy'] / medians['torch']:.2f} (for context)")
    busy = busy_warning()
    if busy:
        print(busy)


if __name__ == "__main__":
    main()
