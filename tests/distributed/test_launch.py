"""tests/launch.py: a failed torchrun run reports what each rank raised, first seen first."""
import pytest
from launch import torchrun

FAILS_ON_RANK_0 = """
import torch.distributed as dist
dist.init_process_group('gloo')
if dist.get_rank() == 0: raise ValueError('rank zero gave up')
dist.barrier()   # rank 1 waits here until rank 0 is gone, and then fails too, on the lost connection
"""


def test_a_failed_run_names_the_rank_that_raised_first_ahead_of_torchruns_report(tmp_path):
    script = tmp_path / 'fails_on_rank_0.py'
    script.write_text(FAILS_ON_RANK_0)
    with pytest.raises(AssertionError) as err:
        torchrun(str(script), timeout=120)
    head = str(err.value).split('\n---\n')[0]
    assert head.startswith('raised:') and 'ValueError: rank zero gave up' in head
