"""Strict checkpoints: a digest of the payload, a compatibility check (optimizer class, param-group layout,
shapes) and a completeness check before anything is applied, all-or-nothing loading, old files still read."""
import copy
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from helpers import same, stop_after
from onecycle import Callback, CheckpointError, GradAccumulation, Learner, accuracy
from onecycle.checkpoint import read_checkpoint
from onecycle.checkpoint.files import atomic_save
from onecycle.core.rng import get_rng_state


def _learner(make_learner, opt_func=torch.optim.AdamW, **kw):
    return make_learner(opt_func=opt_func, metrics=[accuracy], dls_kw=dict(shuffle=True), **kw)


def everything(learn) -> dict:
    "All a failed load must leave as it was, as plain comparable values."
    opt = learn.opt.state_dict()
    return {'model': {k: v.clone() for k, v in learn.model.state_dict().items()},
            'opt_state': {i: {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
                          for i, st in opt['state'].items()},
            'groups': copy.deepcopy(opt['param_groups']),
            'grads': [None if p.grad is None else p.grad.clone() for p in learn.model.parameters()],
            'cbs': list(learn.cbs), 'recorder': copy.deepcopy(learn.recorder.state_dict()),
            'rng': get_rng_state(learn.dls.train), 'loaded': learn.position.loaded}


def _rewrite(path, out, edit):
    "A copy of checkpoint `path` at `out` with `edit(ck)` applied and a digest that matches the edit."
    ck = torch.load(path, weights_only=True)
    edit(ck)
    return atomic_save(ck, out)


@pytest.fixture
def saved(make_learner, tmp_path):
    learn = _learner(make_learner)
    learn.fit_one_cycle(2, 1e-2, callbacks=[GradAccumulation(3), stop_after(5)])
    return learn, learn.save(tmp_path / 'a.pt')


def test_single_byte_flips_are_refused_or_harmless(saved, make_learner, tmp_path):
    "Every flipped byte either fails with a CheckpointError or reads back bitwise what was saved: never silent."
    learn, path = saved
    good = path.read_bytes()
    rng = random.Random(0)
    n = len(good)
    positions = sorted(set(list(range(0, 200)) + list(range(n - 200, n)) + rng.sample(range(n), 200)))
    refused = harmless = 0
    for pos in positions:
        bad = bytearray(good); bad[pos] ^= 1 << rng.randrange(8)
        p = tmp_path / 'flipped.pt'; p.write_bytes(bytes(bad))
        other = _learner(make_learner, model_kw=dict(seed=5))
        before = everything(other)
        try: other.load(p)
        except CheckpointError:
            refused += 1
            assert same(everything(other), before), pos   # nothing changed
            continue
        harmless += 1   # a byte the content does not depend on (zip metadata): the load is bitwise the saved one
        assert same({k: v for k, v in other.model.state_dict().items()}, learn.model.state_dict()), pos
    print(f'{refused} of {len(positions)} single-byte flips refused, {harmless} read back bitwise')
    assert refused == len(positions), (refused, harmless)


def test_version_1_files_still_load(saved, make_learner, tmp_path):
    learn, path = saved
    ck = torch.load(path, weights_only=True)
    ck['version'] = 1
    ck.pop('opt_layout')
    for k in ('train_done', 'train_end_rng'): ck['fit'].pop(k)
    torch.save(ck, tmp_path / 'v1.pt')
    other = _learner(make_learner, model_kw=dict(seed=5))
    other.load(tmp_path / 'v1.pt')
    assert same(other.model.state_dict(), learn.model.state_dict())
    other.fit_one_cycle(2, 1e-2, callbacks=[GradAccumulation(3)], resume=True)
    ref = _learner(make_learner); ref.fit_one_cycle(2, 1e-2, callbacks=[GradAccumulation(3)])
    assert same(other.model.state_dict(), ref.model.state_dict())
    with pytest.raises(CheckpointError, match='version 7'):
        ck['version'] = 7; torch.save(ck, tmp_path / 'v7.pt'); other.load(tmp_path / 'v7.pt')


@pytest.mark.parametrize('saved_opt,loading_opt', [(torch.optim.AdamW, torch.optim.SGD),
                                                   (torch.optim.RMSprop, torch.optim.SGD),
                                                   (torch.optim.SGD, torch.optim.Adam),
                                                   (torch.optim.Adam, torch.optim.AdamW)])
@pytest.mark.parametrize('version', [1, 2])
def test_checkpoint_of_another_optimizer_is_refused_before_anything_changes(make_learner, tmp_path, saved_opt,
                                                                            loading_opt, version):
    src = _learner(make_learner, opt_func=saved_opt)
    src.fit(1)
    path = src.save(tmp_path / 'a.pt')
    if version == 1:
        if saved_opt is torch.optim.Adam and loading_opt is torch.optim.AdamW:
            pytest.skip('Adam and AdamW share their state layout; version 1 files do not name the class')
        ck = torch.load(path, weights_only=True); ck['version'] = 1; ck.pop('opt_layout')
        torch.save(ck, path)
    learn = _learner(make_learner, opt_func=loading_opt)
    learn.fit(1)
    before = everything(learn)
    for call in (lambda: learn.load(path), lambda: learn.fit(1, resume=path)):
        with pytest.raises(CheckpointError, match='optimizer'):
            call()
        assert same(everything(learn), before)
    learn.load(path, with_opt=False)   # weights only: fine
    assert same(learn.model.state_dict(), src.model.state_dict())
    learn.fit(1)   # and the learner trains on


def test_param_groups_in_another_order_are_refused(make_dls, tmp_path):
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    fwd = lambda m: [list(m[0].parameters()), list(m[2].parameters()), list(m[4].parameters())]
    rev = lambda m: [list(m[2].parameters()), list(m[0].parameters()), list(m[4].parameters())]   # same sizes
    mk = lambda s: Learner(model(), make_dls(), nn.CrossEntropyLoss(), splitter=s, device='cpu', progress=False)
    a = mk(fwd); a.fit(1, lr=[1e-3, 1e-2, 1e-1])
    path = a.save(tmp_path / 'a.pt')
    b = mk(rev); b.fit(1, lr=1e-2)
    before = everything(b)
    with pytest.raises(CheckpointError, match='other parameters in its param groups.*group 0 position 0 holds '
                                              "'0.weight' in the checkpoint, '2.weight' here"):
        b.load(path)
    assert same(everything(b), before)
    mk(fwd).load(path)   # the same layout loads


def _drop(key):
    return lambda ck: ck.pop(key)


@pytest.mark.parametrize('name,edit,match', [
    ('no_recorder', _drop('recorder'), "no 'recorder' entry"),
    ('no_rng', _drop('rng'), "no 'rng' entry"),
    ('no_model', _drop('model'), "no 'model' entry"),
    ('no_fit', _drop('fit'), "no 'fit' entry"),
    ('rng_python_short', lambda ck: ck['rng']['python'].__setitem__('state', torch.zeros(5, dtype=torch.int64)),
     "'rng' cannot be put back"),
    ('rng_torch_bad', lambda ck: ck['rng'].__setitem__('torch', torch.zeros(3, dtype=torch.uint8)),
     "'rng' cannot be put back"),
    ('rng_numpy_missing', lambda ck: ck['rng'].pop('numpy'), "'rng' cannot be put back"),
    ('rng_loader_bad', lambda ck: ck['rng']['loaders'].__setitem__(0, torch.zeros(2, dtype=torch.uint8)),
     'loaders'),
    ('epoch_rng_bad', lambda ck: ck['fit']['epoch_rng'].__setitem__('torch', 'x'), "fit\\['epoch_rng'\\]"),
    ('recorder_no_losses', lambda ck: ck['recorder'].pop('losses'), "'recorder' lacks \\['losses'\\]"),
    ('recorder_bad_hps', lambda ck: ck['recorder'].__setitem__('hps', 3), "'recorder' cannot be loaded"),
    ('fit_no_step_count', lambda ck: ck['fit'].pop('step_count'), "'fit' lacks \\['step_count'\\]"),
    ('fit_negative', lambda ck: ck['fit'].__setitem__('batches_done', -1), 'batches_done'),
    ('opt_not_dict', lambda ck: ck.__setitem__('opt', [1, 2]), "'opt' is not an optimizer state dict"),
    ('grads_wrong_shape', lambda ck: ck['grads'].__setitem__(0, torch.zeros(3)), 'gradient 0 has shape'),
    ('opt_state_wrong_shape', lambda ck: ck['opt']['state'][0].__setitem__('exp_avg', torch.zeros(3)),
     "state 'exp_avg' of parameter 0 has shape"),
    ('model_value_not_tensor', lambda ck: ck['model'].__setitem__('0.weight', 3.), 'shape mismatch|not tensors'),
])
def test_incomplete_or_damaged_checkpoint_changes_nothing(saved, make_learner, tmp_path, name, edit, match):
    _, path = saved
    bad = _rewrite(path, tmp_path / f'{name}.pt', edit)
    learn = _learner(make_learner, model_kw=dict(seed=5))
    learn.fit(1)
    before = everything(learn)
    with pytest.raises(CheckpointError, match=match):
        learn.load(bad)
    assert same(everything(learn), before)
    if name not in ('no_fit',):
        with pytest.raises(CheckpointError, match=match):
            learn.fit_one_cycle(2, 1e-2, callbacks=[GradAccumulation(3)], resume=bad)
        assert same(everything(learn), before)


def test_numpy_numbers_make_loadable_checkpoints(make_learner, tmp_path):
    learn = _learner(make_learner)
    learn.fit(np.int64(2), lr=np.float64(1e-2))
    path = learn.save(tmp_path / 'a.pt')
    _learner(make_learner).load(path)
    learn.fit_one_cycle(np.int64(2), np.float32(1e-2), cbs=[stop_after(3)])
    _learner(make_learner).load(learn.save(tmp_path / 'b.pt'))


def test_state_a_safe_load_cannot_read_is_refused_at_save(make_learner, tmp_path):
    class Odd(Callback):
        def state_dict(self): return {'obj': object()}
        def load_state_dict(self, sd): pass
    learn = _learner(make_learner, cbs=[Odd()])
    learn.fit(1)
    with pytest.raises(TypeError, match=r"checkpoint\['callbacks'\]\['Odd'\]\['obj'\] is a builtins.object"):
        learn.save(tmp_path / 'a.pt')
    assert not list(tmp_path.iterdir())


def test_temporary_file_of_a_killed_save_is_removed_by_the_next_save(make_learner, tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    orphan = tmp_path / f'.a.pt.{dead.pid}.x1y2.tmp'; orphan.write_bytes(b'PK half')
    alive = tmp_path / f'.a.pt.{os.getpid()}.z.tmp'; alive.write_bytes(b'in progress')   # a live writer's: kept
    learn = _learner(make_learner)
    learn.save(tmp_path / 'a.pt')
    assert not orphan.exists() and alive.exists()
    read_checkpoint(tmp_path / 'a.pt')


def test_sigkill_during_save_leaves_the_previous_file_and_no_orphan(tmp_path):
    "A real SIGKILL mid-write: the previous checkpoint is intact, and the next save cleans up."
    code = f'''
import sys, time, torch
sys.path.insert(0, {os.path.dirname(os.path.dirname(__file__))!r})
import fault_script as fs
from onecycle.checkpoint import files
learn = fs.make('mlp'); fs.fit(learn, 'mlp')
learn.save({str(tmp_path / 'a.pt')!r})
real = torch.save
def slow(obj, f, *a, **k):
    f.write(b'PK\\x03\\x04 partial'); f.flush(); print('writing', flush=True); time.sleep(60)
torch.save = slow
learn.save({str(tmp_path / 'a.pt')!r})
'''
    env = {**os.environ, 'PYTHONPATH': os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == 'writing'
        p.kill()
    finally: p.wait()
    assert len(list(tmp_path.glob('.a.pt.*.tmp'))) == 1   # the killed writer's
    ck = read_checkpoint(tmp_path / 'a.pt')   # the previous file, whole
    assert ck['fit']['epochs_done'] == 2
    import fault_script as fs
    learn = fs.make('mlp'); learn.load(tmp_path / 'a.pt'); learn.save(tmp_path / 'a.pt')
    assert not list(tmp_path.glob('.a.pt.*.tmp'))
