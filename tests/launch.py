"""Starting a test script on several processes with torchrun (gloo on the CPU), as the distributed tests do."""
import os
import re
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on right now."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun_env() -> dict:
    "This environment, one thread per process, the repository importable, and no torchrun variables of an outer run."
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join([REPO, os.path.join(REPO, 'tests'), os.environ.get('PYTHONPATH', '')])}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    return env


def torchrun(script, *args, nproc=2, timeout=300):
    "Run tests/`script` with `args` on `nproc` processes; fails the test with the output's tail if it fails."
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', os.path.join(REPO, 'tests', script), *map(str, args)]
    p = subprocess.run(cmd, env=torchrun_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, raised_lines(p.stderr) + p.stdout[-3000:] + p.stderr[-3000:]
    return p


def raised_lines(stderr, most=12) -> str:
    """Each rank's exception lines (`[rank0]: ValueError: ...`), first seen first: the tail of torchrun's output
    is mostly its own report, and names only the rank that failed last (often one whose peer had gone)."""
    pattern = re.compile(r'^(\[rank\d+\]:\s*)?[\w.]*(Error|Exception|Interrupt)\b')
    seen = list(dict.fromkeys(line for line in stderr.splitlines() if pattern.match(line)))
    return 'raised:\n' + '\n'.join(seen[:most]) + '\n---\n' if seen else ''


def rank_results(out, nproc=2) -> list:
    "What each rank of a test script saved: `out`/rank{R}.pt for R in 0..nproc-1."
    import torch
    return [torch.load(os.path.join(out, f'rank{r}.pt'), weights_only=False) for r in range(nproc)]
