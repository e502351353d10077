"""README.md's quick start runs as pasted: its first code block is a complete script."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _blocks():
    return re.findall(r'```python\n(.*?)```', (ROOT / 'README.md').read_text(), re.S)


def test_quick_start_is_the_first_code_block_and_defines_what_it_uses():
    first = _blocks()[0]
    assert 'Learner(' in first and 'lr_find' in first and 'fit_one_cycle' in first
    for name in ('model', 'dls'):   # nothing the block uses is left for the reader to invent
        assert re.search(rf'^{name} = ', first, re.M), name


def test_quick_start_runs_as_a_script(tmp_path):
    script = tmp_path / 'quickstart.py'
    script.write_text(_blocks()[0])
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
           'MPLBACKEND': 'Agg'}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    row = eval(r.stdout.strip().splitlines()[-1])   # the printed last-epoch row
    assert row['epoch'] == 4 and row['accuracy'] > 0.9 and row['valid_loss'] < row['train_loss'] * 10
    for png in ('losses.png', 'schedule.png', 'lr_find.png'):   # a script saves its Figures
        assert (tmp_path / png).stat().st_size > 10_000, png
