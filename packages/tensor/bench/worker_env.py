"""What both PyTorch workers of the bench (gpt_torch.py, torch_anchor.py) report about the process they
run in. Imported from the scripts' own directory (Python puts it first on sys.path)."""


def allocator():
    """The malloc this process runs on: TCMalloc where the bench preloaded it (LD_PRELOAD), else glibc's."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    return "tcmalloc" if "tcmalloc" in maps else "jemalloc" if "jemalloc" in maps else "glibc malloc"
