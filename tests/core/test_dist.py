"""The process group that onecycle joins for a torchrun launch (gloo on the CPU here)."""
import textwrap

import pytest
from launch import torchrun

SCRIPT = '''
import atexit, os, sys, time
out = sys.argv[1]
if sys.argv[2] == 'mixed':   # a group of several backends, as on a CUDA machine ('cpu:gloo,cuda:nccl')
    import torch.distributed as dist
    _init = dist.init_process_group
    dist.init_process_group = lambda *a, **kw: _init('cpu:gloo', **kw)
# registered first, so it runs last: after onecycle's own exit handler has left the group
atexit.register(lambda: open(os.path.join(out, 'left' + os.environ['RANK']), 'w').write(repr(time.time())))
from onecycle.core.dist import init_distributed, rank
assert init_distributed()
if rank() == 1: time.sleep(2)          # the slow rank still works while rank 0 is done
open(os.path.join(out, 'done%d' % rank()), 'w').write(repr(time.time()))
'''


@pytest.mark.parametrize('backend', ['gloo', 'mixed'])
def test_a_rank_leaves_the_group_only_once_every_rank_is_done(tmp_path, backend):
    """Tearing gloo down under a peer that still works aborts that peer: the exit handler waits for all ranks,
    also in a group of mixed backends, where torch's monitored_barrier refuses the default group."""
    (tmp_path / 'script.py').write_text(textwrap.dedent(SCRIPT))
    torchrun(str(tmp_path / 'script.py'), tmp_path, backend, nproc=2, timeout=120)
    t = {name: float((tmp_path / name).read_text()) for name in ('done0', 'done1', 'left0', 'left1')}
    assert t['done1'] - t['done0'] > 1.5            # the premise: rank 1 finished well after rank 0
    assert t['left0'] >= t['done1']                 # and rank 0 waited for it before leaving
