"""PyTorch anchor for bench/kernels.bench.ts, measured in the same run on the same machine.

A worker kept for the bench's run (bench/torch-worker.ts): one JSON request per line on stdin, one JSON
answer per line on stdout, so the bench can alternate its GEMM rounds with these without paying the
torch import per round.
  {"gemm": {"n": 1024, "reps": 7}}  ->  torch.matmul f32 and bf16 GFLOP/s at n^3 on one thread
                                        (median process CPU time of reps, after a warm-up call),
                                        and for f32 numpy.matmul too (the BLAS numpy links, named:
                                        OpenBLAS where Debian's libopenblas0-pthread is installed;
                                        the bench starts this worker with OPENBLAS_NUM_THREADS=1);
                                        "dtypes": ["bf16"] (say) measures only those ("f32" is
                                        torch.matmul and numpy, "numpy" numpy alone), "cpu": 1 runs
                                        pinned to that CPU (the bench pins itself to the same one)
  {"adamw": {"params": 50000000, "steps": 5, "threads": 2}}  ->  torch.optim.AdamW parameters per
                                        second on `threads` threads (median wall time of steps),
                                        both the default single-tensor loop and foreach=True;
                                        "variants": ["foreach"] measures only that one. The last
                                        optimizer made is kept (parameters, gradient and state: 800 MB
                                        at 50M), so a request of one step can alternate with the
                                        bench's own; its first step (state allocation) is not timed
"""
import json
import os
import statistics
import sys
import time

import numpy
import torch

from worker_env import allocator


def median_seconds(fn, reps, clock=time.perf_counter):
    fn()  # warm-up: first-call allocation and kernel selection
    times = []
    for _ in range(reps):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def set_threads(threads):
    # Only when it changes: setting it again before every one-step request slowed the step after it.
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def gemm_gflops(n, dtype, reps):
    set_threads(1)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g).to(dtype)
    b = torch.rand(n, n, generator=g).to(dtype)
    c = torch.empty(n, n, dtype=dtype)
    # Process CPU time, as the TypeScript side measures its one-thread rows (the machine is shared).
    secs = median_seconds(lambda: torch.matmul(a, b, out=c), reps, time.process_time)
    return 2.0 * n * n * n / secs / 1e9


def numpy_gemm(n, reps):
    """numpy.matmul f32 GFLOP/s on one thread, and the BLAS library it ran on (from this process's maps)."""
    rng = numpy.random.default_rng(0)
    a = rng.random((n, n), dtype=numpy.float32)
    b = rng.random((n, n), dtype=numpy.float32)
    c = numpy.empty((n, n), dtype=numpy.float32)
    secs = median_seconds(lambda: numpy.matmul(a, b, out=c), reps, time.process_time)
    with open("/proc/self/maps") as f:
        libs = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in f if "blas" in line.lower() and line.split()[-1].startswith("/")})
    return 2.0 * n * n * n / secs / 1e9, ", ".join(libs) or "unknown"


_optimizer = {}  # (params, foreach) -> the one optimizer kept between requests


def adamw_params_per_s(n, steps, threads, foreach):
    set_threads(threads)
    key = (n, foreach)
    if key not in _optimizer:
        _optimizer.clear()  # one optimizer's memory at a time
        p = torch.nn.Parameter(torch.rand(n))
        p.grad = torch.rand(n)
        opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=foreach)
        opt.step()  # warm-up: allocates exp_avg and exp_avg_sq
        _optimizer[key] = opt
    opt = _optimizer[key]
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main():
    malloc = allocator()  # fixed for the process (LD_PRELOAD at start)
    for line in sys.stdin:
        req = json.loads(line)
        out = {"torch": torch.__version__, "allocator": malloc}
        if "gemm" in req:
            cfg = req["gemm"]
            dtypes = cfg.get("dtypes", ["f32", "bf16"])
            allowed = os.sched_getaffinity(0)
            if cfg.get("cpu") is not None:
                os.sched_setaffinity(0, {cfg["cpu"]})
            try:
                with torch.no_grad():
                    if "f32" in dtypes:
                        out["gemm_f32_gflops"] = gemm_gflops(cfg["n"], torch.float32, cfg["reps"])
                    if "f32" in dtypes or "numpy" in dtypes:
                        out["numpy_f32_gflops"], out["numpy_blas"] = numpy_gemm(cfg["n"], cfg["reps"])
                        out["numpy"] = numpy.__version__
                    if "bf16" in dtypes:
                        out["gemm_bf16_gflops"] = gemm_gflops(cfg["n"], torch.bfloat16, cfg["reps"])
            finally:
                os.sched_setaffinity(0, allowed)
        if "adamw" in req:
            cfg = req["adamw"]
            variants = cfg.get("variants", ["single", "foreach"])
            if "single" in variants:
                out["adamw_params_per_s"] = adamw_params_per_s(cfg["params"], cfg["steps"], cfg["threads"], False)
            if "foreach" in variants:
                out["adamw_foreach_params_per_s"] = adamw_params_per_s(cfg["params"], cfg["steps"], cfg["threads"], True)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
