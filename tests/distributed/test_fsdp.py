"""Fully sharded training (FSDP2): helpers and bad input in one process; real training on two processes
launched with ``python -m torch.distributed.run --nproc_per_node=2`` (gloo, CPU) running
tests/fsdp_script.py once, and once more as two torchrun "nodes" (``--nnodes=2``) on this machine."""
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

import fsdp_script as fs
from launch import free_port, rank_results, torchrun, torchrun_env
from onecycle import FSDP, Learner, full_state_dict
from onecycle.checkpoint import CheckpointError, load_model_weights
from onecycle.core.hyper import weight_scale
from onecycle.distributed import (default_blocks, is_sharded, is_sharded_checkpoint, load_sharded, max_over_ranks,
                                  pad_forward_passes, save_sharded, shard_model)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- one process -----------------------------------------------------------------------------------
def test_default_blocks_are_the_elements_of_module_lists():
    net = fs.Net()
    assert default_blocks(net) == [net.blocks[0], net.blocks[1]]
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert default_blocks(seq) == [seq[0], seq[2]]          # layers without parameters stay with their parent
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), nn.Linear(2, 1))
    assert default_blocks(nested) == [nested[0][0], nested[0][1], nested[1]]   # lists of lists are looked into

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.layers = nn.Linear(4, 4), nn.ModuleList([nn.TransformerEncoderLayer(4, 1, 8)] * 1)
    enc = Encoder()
    blocks = default_blocks(enc)
    assert blocks == [enc.layers[0]]   # not inside a block: the layer's own linears stay in it


def test_fsdp_rejects_bad_arguments():
    with pytest.raises(TypeError, match='policy'): FSDP(policy='blocks')
    with pytest.raises(ValueError, match='mixed_precision'): FSDP(mixed_precision='bf16')
    with pytest.raises(TypeError, match='mixed_precision='): FSDP(mp_policy=None)
    with pytest.raises(TypeError, match='mesh'): FSDP(mesh=None)
    with pytest.raises(TypeError, match='reshard_after_forward'): FSDP(reshard_after_forward='yes')
    FSDP(policy=nn.Linear); FSDP(policy=(nn.Linear, nn.LayerNorm)); FSDP(policy=lambda m: False)
    FSDP(mixed_precision=torch.bfloat16); FSDP(policy=None, mixed_precision=None)


def test_outside_torchrun_fsdp_changes_nothing(make_learner, tmp_path):
    learn = Learner(fs.make_model(), fs.make_dls(), cbs=[FSDP()], progress=False, **fs.learner_kwargs())
    assert not is_sharded(learn.model) and type(learn.model) is fs.Net
    assert not any(type(c).__name__ == 'DistributedCallback' for c in learn.cbs)
    fs.one_cycle(learn, 1)
    assert learn.step_count == 8 and not is_sharded(learn.model)
    sd = full_state_dict(learn.model)
    assert all(v.device.type == 'cpu' for v in sd.values()) and set(sd) == set(learn.model.state_dict())
    assert max_over_ranks(3) == 3
    assert pad_forward_passes(learn.model, 2, lambda: learn.model(torch.zeros(1, fs.N_IN))) == 0
    with pytest.raises(RuntimeError, match='torchrun'): shard_model(fs.make_model())
    learn.save(tmp_path / 'plain.pt')                         # an unsharded learner saves one file, as before
    assert not is_sharded_checkpoint(tmp_path / 'plain.pt') and not is_sharded_checkpoint(tmp_path)
    with pytest.raises(ValueError, match='directory'): save_sharded(learn, tmp_path / 'plain.pt')
    with pytest.raises(CheckpointError, match='not a sharded'): load_sharded(learn, tmp_path)


# --- two processes ---------------------------------------------------------------------------------
def _script(out, mode):
    return [os.path.join(REPO, 'tests', 'fsdp_script.py'), str(out), mode]


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    "Run tests/fsdp_script.py on two processes once; what each rank saved (and its checkpoints' folder)."
    out = tmp_path_factory.mktemp('fsdp')
    torchrun('fsdp_script.py', out, 'full')
    return rank_results(out), out


class GlobalBatches(Sampler):
    """One process's batches equal to 2 ranks' global batches: the k-th batch joins each rank's k-th
    slice of `per_rank` samples of its DistributedSampler, reshuffled per epoch as set_epoch does."""
    def __init__(self, dataset, per_rank, world=2):
        self.parts = [DistributedSampler(dataset, world, r, shuffle=True, seed=fs.SHUFFLE_SEED) for r in range(world)]
        self.per_rank, self.epoch = per_rank, 0

    def batches(self, epoch):
        for s in self.parts: s.set_epoch(epoch)
        shares = [list(s) for s in self.parts]
        return [[i for sh in shares for i in sh[k:k + self.per_rank]] for k in range(0, len(shares[0]), self.per_rank)]

    def __iter__(self):
        self.epoch += 1
        return iter(self.batches(self.epoch - 1))

    def __len__(self): return len(self.batches(0))


def _one_process(per_rank=fs.BS, **kw):
    train, valid = fs.make_data()
    sampler = GlobalBatches(train, per_rank)
    # a generator it does not use: the 2-rank loaders have one, and a resume checks that they match
    dls = DataLoader(train, batch_sampler=sampler, generator=torch.Generator()), DataLoader(valid, batch_size=4)
    return Learner(fs.make_model(fs.MODEL_SEED), dls, progress=False, **fs.learner_kwargs(), **kw), sampler


def _close(a, b, rtol=1e-4, atol=1e-5):
    assert list(a) == list(b)
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=k)


def _same(a, b):
    assert list(a) == list(b)
    for k in a: assert torch.equal(a[k], b[k]), k


def test_the_model_is_sharded_not_wrapped_and_the_optimizer_holds_the_shards(ranks):
    (r0, r1), _ = ranks
    assert r0['world_size'] == 2 and r0['cbs'].index('FSDP') < r0['cbs'].index('DistributedCallback')
    p = r0['fit']['probe']
    assert p['train_type'] == 'FSDPNet'                      # fully_shard's class, no DDP wrapper around it
    assert p['param_types'] == p['opt_types'] == ['DTensor'] and p['n_groups'] == 2
    assert p['lrs'][1] == pytest.approx(10 * p['lrs'][0])    # discriminative lrs from slice(max_lr/10, max_lr)
    assert r1['stdout'] == ''
    assert 'FSDP: 2 processes x batch 8 x 1 accumulation steps = effective batch size 16' in r0['stdout']


def test_fit_one_cycle_matches_one_process_on_the_same_global_batches(ranks):
    (r0, r1), _ = ranks
    f0, f1 = r0['fit'], r1['fit']
    _same(f0['full'], f1['full'])                            # one model, gathered the same on both ranks
    assert f0['losses'] == f1['losses'] and f0['hps'] == f1['hps'] and f0['epochs'] == f1['epochs']
    learn, sampler = _one_process()
    fs.one_cycle(learn)
    # ranks started from different weights: rank 0's were broadcast before sharding, as DDP does
    _close(f0['full'], learn.model.state_dict())
    assert f0['hps'] == learn.recorder.hps                   # every scheduler: a function of the step alone
    assert f0['losses'] == pytest.approx(learn.recorder.losses, rel=1e-4, abs=1e-6)
    for e_fsdp, e_one in zip(f0['epochs'], learn.recorder.epochs):
        # validation over shares of 2 and 1 batches (the short one ran an extra, unrecorded forward)
        for k in ('train_loss', 'valid_loss', 'accuracy'): assert e_fsdp[k] == pytest.approx(e_one[k], rel=1e-4)
    assert f0['validate'] == pytest.approx(learn.validate(), rel=1e-4)


def test_the_range_test_restores_the_shards_and_the_optimizer_bitwise(ranks):
    (r0, r1), _ = ranks
    for r in (r0, r1):
        l = r['lr_find']
        assert l['stopped_early'] and 3 <= len(l['lrs']) < 30
        _same(l['before'], l['after']); _same(l['opt_before'], l['opt_after'])
        assert len(l['opt_before']) == 8                     # a momentum buffer per parameter shard
        _same(r['lr_find_valid']['after'], l['before'])
    assert r0['lr_find']['losses'] == r1['lr_find']['losses']
    # SGD on a plain model: the hold check's probes ran on the shards too, and every rank saw the same
    h0, h1 = r0['lr_find']['held'], r1['lr_find']['held']
    assert h0 and h0 == h1 and r0['lr_find']['suggestion'] == r1['lr_find']['suggestion'] in h0['lrs']
    v0, v1 = r0['lr_find_valid']['valid_losses'], r1['lr_find_valid']['valid_losses']
    assert len(v0) == 3 and v0 == v1                         # the subset loss over unequal shares, on every rank
    # the weights' typical size an Adam suggestion is held to: the whole tensors', the same on every rank
    full = fs.make_model()
    full.load_state_dict(r0['fit']['full'])
    assert r0['lr_find']['weight_scale'] == r1['lr_find']['weight_scale'] == pytest.approx(weight_scale(full))


def test_accumulation_reduces_gradients_only_on_the_batches_that_step(ranks):
    (r0, r1), _ = ranks
    a = r0['accum']
    assert a['steps'] == 4 and a['seen'] == [(False, False), (True, True)] * 4   # no sharded grad before the step
    _same(a['full'], r1['accum']['full'])
    learn, _ = _one_process(per_rank=4 * 2)
    learn.fit(1, lr=0.3)
    _close(a['full'], learn.model.state_dict())


def test_interrupted_on_two_ranks_resumes_as_if_never_stopped(ranks):
    (r0, r1), out = ranks
    assert r0['interrupted']['steps'] == 6
    assert {'.metadata', '__0_0.distcp', '__1_0.distcp', 'onecycle.pt'} <= set(r0['interrupted']['files'])
    for r in (r0, r1):
        assert r['resumed']['losses'] == r['whole']['losses'] and r['resumed']['hps'] == r['whole']['hps']
        _same(r['resumed']['full'], r['whole']['full'])
        _same(r['reloaded']['local'], r['reloaded']['want_local'])   # learn.load of a finished fit's checkpoint
        _same(r['reloaded']['opt'], r['reloaded']['want_opt'])
        assert len(r['reloaded']['opt']) == 8


def test_a_two_rank_checkpoint_loads_and_resumes_in_one_process(ranks):
    (r0, _), out = ranks
    # learn.load: the full weights of the 2-rank fit, gathered from both ranks' files
    learn, _ = _one_process()
    learn.load(out / 'end')
    _same(learn.model.state_dict(), r0['whole']['full'])
    assert learn.recorder.losses == r0['whole']['losses'] and len(learn.opt.state) == 8
    # resume the fit interrupted on 2 ranks, on 1: the same result, within float tolerance (other reductions)
    learn, sampler = _one_process()
    sampler.epoch = 1   # the interrupted epoch: its shuffle
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*DistributedCallback')   # the data-sharding state has no use here
        fs.one_cycle(learn, resume=out / 'ck')
    _close(learn.model.state_dict(), r0['whole']['full'])
    assert learn.recorder.losses[:6] == r0['whole']['losses'][:6]   # the history before the interruption, as saved
    assert learn.recorder.losses == pytest.approx(r0['whole']['losses'], rel=1e-4, abs=1e-6)


def test_a_sharded_checkpoint_is_refused_when_it_does_not_fit(ranks):
    _, out = ranks
    learn, _ = _one_process()
    other = Learner(nn.Sequential(nn.Linear(fs.N_IN, 2)), fs.make_dls(), nn.CrossEntropyLoss(), progress=False)
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(CheckpointError, match='different model'): other.load(out / 'end')
    _same(other.model.state_dict(), before)                   # nothing changed
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(CheckpointError, match='2 epochs, this one has 3'): fs.one_cycle(learn, 3, resume=out / 'ck')
    _same(learn.model.state_dict(), before)


def test_save_model_writes_sharded_checkpoints_loads_the_best_and_resumes_exactly(ranks):
    (r0, r1), out = ranks
    w = r0['save_model']['whole']
    assert w['paths'] == ('model_last', 'model_best') and w['files'] == ['model_best', 'model_last']
    assert {'.metadata', '__0_0.distcp', '__1_0.distcp', 'onecycle.pt'} <= set(w['last_files'])
    assert is_sharded_checkpoint(out / 'sm_whole' / 'model_best') and not (out / 'sm_whole' / 'model_last.pt').exists()
    # every 3 batches, with groups of 2: the saves due after batches 3 and 6 wait for the step after 4 and 6
    assert w['saves'] == [(0, 4), (0, 6), (1, 0), (1, 4), (1, 6), (2, 0), (2, 4), (2, 6)] and w['warned'] == []
    assert (w['last_fit']['epochs_done'], w['last_fit']['batches_done']) == (3, 0)
    # load_best: the weights of epoch 1 (the best score), gathered, on both ranks; not those of the last epoch
    assert w['best'] == (1.0, 1)
    for r in (r0, r1):
        _same(r['save_model']['whole']['final'], w['weights'][1])
        assert any(not torch.equal(v, w['weights'][2][k]) for k, v in w['final'].items())
    # interrupted inside a group (after batch 7 of epoch 1): the last checkpoint is the group boundary before it
    i = r0['save_model']['interrupted']
    assert i['saves'][-1] == (1, 6) and i['steps'] == 4 + 3
    assert len(i['mid_group_save_warned']) == 1 and 'middle of a gradient accumulation group' in \
        i['mid_group_save_warned'][0]   # learn.save there still writes, and says what it cannot hold
    assert is_sharded_checkpoint(out / 'sm_mid_group')
    # fit(..., resume=SaveModel's last checkpoint): bitwise the uninterrupted fit, on both ranks
    for r in (r0, r1):
        res, whole = r['save_model']['resumed'], r['save_model']['whole']
        assert res['losses'] == whole['losses'] and res['hps'] == whole['hps'] and res['warned'] == []
        assert sorted(res['weights']) == [1, 2]
        _same(res['weights'][1], whole['weights'][1]); _same(res['weights'][2], whole['weights'][2])
        assert res['best'] == whole['best']
        _same(res['final'], whole['final'])
    # the best checkpoint of 2 ranks: its weights alone, in one process, into a plain model
    model = fs.make_model(fs.MODEL_SEED + 9)
    load_model_weights(model, out / 'sm_whole' / 'model_best')
    _same(model.state_dict(), w['weights'][1])


# --- two "machines" --------------------------------------------------------------------------------
def test_two_torchrun_nodes_train_to_the_same_weights(tmp_path):
    "The multi-node launch of the README, with both nodes on this machine: rendezvous on 127.0.0.1."
    port, env = free_port(), torchrun_env()
    procs = [subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', '--nproc_per_node=1',
                               f'--node_rank={n}', '--master_addr=127.0.0.1', f'--master_port={port}',
                               *_script(tmp_path, 'nodes')], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for n in range(2)]
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for q in procs: q.kill()
        outs = [q.communicate()[0] for q in procs]
        raise AssertionError('the two nodes did not finish in 240 s:\n' + '\n'.join(o[-3000:] for o in outs))
    assert all(p.returncode == 0 for p in procs), '\n'.join(o[-3000:] for o in outs)
    r0, r1 = rank_results(tmp_path)
    assert (r0['rank'], r1['rank'], r0['world_size']) == (0, 1, 2)
    _same(r0['fit']['full'], r1['fit']['full'])
    learn, _ = _one_process()
    fs.one_cycle(learn)
    _close(r0['fit']['full'], learn.model.state_dict())
