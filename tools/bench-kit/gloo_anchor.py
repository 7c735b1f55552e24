"""PyTorch gloo anchor shared by the comm benches (@ds/core's, @ds/comm-mpi's; bench-kit's
glooAnchor runs it): allreduce busbw of 2 ranks on this host, measured the way @ds/core's
src/comm/perf.ts measures ours (f32, warm-up calls, then `reps` timed loops of `iters` calls issued
back to back and waited for at the end; a loop's time per call is the slowest rank's; best loop).

    python3 gloo_anchor.py '{"sizes": {"allreduce_64MiB": 67108864, "allreduce_1MiB": 1048576}, "reps": 5, "warmup": 2}'

prints one JSON line: {"torch": version, "rows": {key: {"bytes", "timeUs", "algbw", "busbw"}}}.
busbw = algbw * 2(n-1)/n (nccl-tests), which is algbw for 2 ranks.
"""
import json
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def iters_for(nbytes, smoke):
    return 1 if smoke else (10 if nbytes >= 64 * 1024 * 1024 else 200)


def rank_main(rank, port, cfg, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    rows = {}
    for key, nbytes in cfg["sizes"].items():
        t = torch.ones(nbytes // 4, dtype=torch.float32)
        iters = iters_for(nbytes, cfg.get("smoke", False))
        for _ in range(cfg["warmup"]):
            dist.all_reduce(t)
        best = float("inf")
        for _ in range(cfg["reps"]):
            dist.barrier()
            t0 = time.perf_counter()
            works = [dist.all_reduce(t, async_op=True) for _ in range(iters)]
            for w in works:
                w.wait()
            per_call = torch.tensor([(time.perf_counter() - t0) / iters])
            dist.all_reduce(per_call, op=dist.ReduceOp.MAX)
            best = min(best, per_call.item())
        algbw = nbytes / best / 1e9
        rows[key] = {"bytes": nbytes, "timeUs": best * 1e6, "algbw": algbw, "busbw": algbw * 2 * (WORLD - 1) / WORLD}
    if rank == 0:
        queue.put(rows)
    dist.destroy_process_group()


def main():
    cfg = json.loads(sys.argv[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(rank_main, args=(port, cfg, queue), nprocs=WORLD, join=True, start_method="spawn")
    print(json.dumps({"torch": torch.__version__, "rows": queue.get()}), flush=True)


if __name__ == "__main__":
    main()
