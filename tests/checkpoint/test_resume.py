"""Exact resume: stop fit_one_cycle anywhere, resume in a new process, get bitwise the same result."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import stop_after
from onecycle import CheckpointError, GradAccumulation, accuracy

REPO = str(Path(__file__).resolve().parents[2])
SCRIPT = str(Path(__file__).resolve().parents[1] / 'resume_script.py')
from resume_script import POINTS  # noqa: E402


def _run(mode, out):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': REPO + os.pathsep + os.environ.get('PYTHONPATH', '')}
    p = subprocess.run([sys.executable, SCRIPT, mode, str(out)], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.fixture(scope='module')
def resumed(tmp_path_factory):
    "Stop at every point in one process, resume each checkpoint in another."
    out = tmp_path_factory.mktemp('resume')
    _run('stop', out)
    return json.loads(_run('resume', out).strip().splitlines()[-1])


@pytest.mark.parametrize('shuffle', ['seeded', 'global'])
@pytest.mark.parametrize('point', list(POINTS))
def test_resume_in_new_process_is_bitwise_exact(resumed, point, shuffle):
    r = resumed[f'{shuffle}:{point}']
    assert r['weights'], 'final weights differ from the uninterrupted run'
    assert r['history'], 'recorded losses, hyper-parameters or epoch table differ from the uninterrupted run'


def _learner(make_learner, seed=0):
    return make_learner(opt_func=torch.optim.AdamW, metrics=[accuracy], model_kw=dict(seed=seed),
                        dls_kw=dict(shuffle=True))


def test_start_epoch_continues_the_same_cycle(make_learner):
    full = _learner(make_learner)
    full.fit_one_cycle(4, 1e-2)
    split = _learner(make_learner)
    split.fit_one_cycle(2, 1e-2, tot_epochs=4)
    lrs, moms = list(split.recorder.lrs), list(split.recorder.moms)
    split.fit_one_cycle(2, 1e-2, tot_epochs=4, start_epoch=3)
    assert lrs + split.recorder.lrs == full.recorder.lrs
    assert moms + split.recorder.moms == full.recorder.moms
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), split.model.state_dict().values()))


def test_resume_in_memory_and_from_load(make_learner, tmp_path):
    ref = _learner(make_learner)
    ref.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3)])
    learn = _learner(make_learner)
    learn.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3), stop_after(6)])   # epoch 1, batch 2: mid-group
    path = learn.save(tmp_path / 'a.pt')
    learn.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3)], resume=True)
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), learn.model.state_dict().values()))
    again = _learner(make_learner, seed=3)
    again.load(path)
    again.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3)], resume=True)
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), again.model.state_dict().values()))
    assert again.recorder.losses == ref.recorder.losses


def test_resume_checks_the_fit_matches(make_learner, tmp_path):
    learn = _learner(make_learner)
    learn.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(2), stop_after(5)])
    path = learn.save(tmp_path / 'a.pt')
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(CheckpointError, match='same gradient accumulation'):
        learn.fit_one_cycle(3, 1e-2, resume=path)
    with pytest.raises(ValueError, match='OneCycleScheduler: the checkpoint.s schedules span'):
        learn.fit_one_cycle(3, 1e-2, tot_epochs=4, callbacks=[GradAccumulation(2)], resume=path)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())
    fresh = _learner(make_learner)
    with pytest.raises(CheckpointError, match='saved outside a fit'):
        fresh.fit(1, resume=fresh.save(tmp_path / 'b.pt'))


def test_resuming_a_finished_fit_changes_nothing(make_learner, tmp_path):
    learn = _learner(make_learner)
    learn.fit_one_cycle(2, 1e-2)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    n = len(learn.recorder.losses)
    learn.fit_one_cycle(2, 1e-2, resume=learn.save(tmp_path / 'a.pt'))
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())
    assert len(learn.recorder.losses) == n and len(learn.recorder.epochs) == 2
