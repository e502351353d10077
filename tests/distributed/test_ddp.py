"""Distributed data parallel: helpers in one process, and real training on two processes launched with
``python -m torch.distributed.run --nproc_per_node=2`` (gloo, CPU) running tests/ddp_script.py once."""
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import (DataLoader, DistributedSampler, IterableDataset, Sampler, TensorDataset,
                              WeightedRandomSampler)

import ddp_script
from launch import rank_results, torchrun
from onecycle import Learner
from onecycle.distributed import (DistributedCallback, ShardSampler, any_rank, distribute,
                                  effective_batch_size, init_distributed, is_distributed, is_main_process, main_print,
                                  rank, scale_lr, shard_loader, sum_over_ranks, unwrap_model, world_size)
from onecycle.callbacks.training import GradAccumulation


# --- one process -----------------------------------------------------------------------------------
def test_helpers_without_a_process_group(capsys):
    assert not is_distributed() and rank() == 0 and world_size() == 1 and is_main_process()
    assert any_rank(True) and not any_rank(False)
    assert sum_over_ranks(3., 2) == (3., 2)
    main_print('hello'); assert capsys.readouterr().out == 'hello\n'
    m = nn.Linear(2, 2)
    assert unwrap_model(m) is m
    with pytest.raises(RuntimeError, match='not initialized'): distribute(object())


def test_init_distributed_needs_torchrun(monkeypatch):
    for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'): monkeypatch.delenv(k, raising=False)
    assert init_distributed() is False and not is_distributed()
    monkeypatch.setenv('RANK', '0'); monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1'); monkeypatch.setenv('MASTER_PORT', '1')
    assert init_distributed() is False and not is_distributed()   # one process: nothing to join


def _ds(n=20):
    return TensorDataset(torch.arange(n).float()[:, None], torch.arange(n))


def _indices(dl):
    return [int(i) for _, y in dl for i in y]


def test_shard_loader_splits_training_data_evenly_and_keeps_the_loader_settings():
    collate = torch.utils.data.default_collate
    dl = DataLoader(_ds(21), batch_size=4, shuffle=True, drop_last=True, collate_fn=collate)
    shards = [shard_loader(dl, True, 2, r, seed=3) for r in range(2)]
    for s in shards:
        assert isinstance(s.sampler, DistributedSampler) and s.sampler.shuffle
        assert (s.batch_size, s.drop_last, s.collate_fn, s.num_workers) == (4, True, collate, 0)
        assert len(s) == 2   # 11 samples each (21 padded to 22), 2 whole batches
    a, b = (list(s.sampler) for s in shards)
    assert len(a) == len(b) == 11 and set(a) | set(b) == set(range(21))
    shards[0].sampler.set_epoch(1)
    assert list(shards[0].sampler) != a   # a new order each epoch
    seq = shard_loader(DataLoader(_ds(8), batch_size=2), True, 2, 1)
    assert not seq.sampler.shuffle and _indices(seq) == [1, 3, 5, 7]


def test_shard_loader_splits_validation_without_repeating_samples():
    dl = DataLoader(_ds(7), batch_size=3)
    shards = [shard_loader(dl, False, 2, r) for r in range(2)]
    assert [_indices(s) for s in shards] == [[0, 2, 4, 6], [1, 3, 5]]
    assert shard_loader(shards[0], False, 2, 0) is shards[0]   # already sharded
    with pytest.raises(ValueError, match='rank must be < num_replicas'): ShardSampler(_ds(), 2, 2)
    with pytest.raises(ValueError, match='num_replicas'): ShardSampler(_ds(), 0, 0)


class _Stream(IterableDataset):
    def __iter__(self): return iter(range(4))


class _Pairs(Sampler):
    def __iter__(self): return iter([[0, 1], [2, 3]])
    def __len__(self): return 2


@pytest.mark.parametrize('make', [
    lambda: DataLoader(_Stream(), batch_size=2),
    lambda: DataLoader(_ds(), sampler=WeightedRandomSampler(torch.ones(20), 20)),
    lambda: DataLoader(_ds(), batch_sampler=_Pairs()),
    lambda: [(torch.zeros(1), torch.zeros(1))],
], ids=['iterable', 'custom_sampler', 'custom_batch_sampler', 'list'])
def test_shard_loader_leaves_what_it_cannot_split_with_a_warning(make):
    dl = make()
    with pytest.warns(UserWarning, match='unsharded'): assert shard_loader(dl, True, 2, 0) is dl
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert shard_loader(dl, True, 1, 0) is dl   # one process: nothing to warn about


def test_effective_batch_size_counts_accumulation_before_the_fit(make_learner):
    learn = make_learner(dls_kw=dict(bs=16))
    assert learn.effective_batch_size == effective_batch_size(learn) == 16
    learn.add_cb(GradAccumulation(4))
    assert learn.effective_batch_size == 64


def test_scale_lr_is_the_linear_rule():
    assert scale_lr(0.1, 512, 256) == pytest.approx(0.2)
    assert scale_lr((0.1, 0.01), 64, 256) == pytest.approx((0.025, 0.0025))
    with pytest.raises(ValueError, match='batch_size'): scale_lr(0.1, 0, 256)
    with pytest.raises(ValueError, match='base_batch_size'): scale_lr(0.1, 64, -1)
    with pytest.raises(TypeError, match='lr'): scale_lr('0.1', 64, 256)


def test_distributed_callback_rejects_a_module_argument():
    with pytest.raises(TypeError, match='module'): DistributedCallback(module=nn.Linear(1, 1))


# --- two processes ---------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    "Run tests/ddp_script.py on two processes once; what each rank saved."
    out = tmp_path_factory.mktemp('ddp')
    torchrun('ddp_script.py', out)
    return rank_results(out)


class GlobalBatches(Sampler):
    """The batches one process must take to match 2 ranks: step k joins every rank's k-th group of
    `per_rank` samples from its DistributedSampler; a new shuffle each epoch, as set_epoch gives."""
    def __init__(self, dataset, per_rank, seed, world=2):
        self.samplers = [DistributedSampler(dataset, world, r, shuffle=True, seed=seed) for r in range(world)]
        self.per_rank, self.epoch = per_rank, 0

    def batches(self, epoch):
        for s in self.samplers: s.set_epoch(epoch)
        shares = [list(s) for s in self.samplers]
        return [sum((sh[k:k + self.per_rank] for sh in shares), []) for k in range(0, len(shares[0]), self.per_rank)]

    def __iter__(self):
        self.epoch += 1
        return iter(self.batches(self.epoch - 1))

    def __len__(self):
        return len(self.batches(0))


def _one_process_learner(per_rank):
    from onecycle.core.metrics import accuracy
    train, valid = ddp_script.make_data()
    sampler = GlobalBatches(train, per_rank, ddp_script.SHUFFLE_SEED)
    dls = DataLoader(train, batch_sampler=sampler), DataLoader(valid, batch_size=6)
    learn = Learner(ddp_script.make_model(ddp_script.MODEL_SEED), dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD,
                    metrics=[accuracy], device='cpu', progress=False)
    return learn, sampler


def _assert_same_state(a, b, rtol=0., atol=0.):
    "Same keys and values (bitwise by default)."
    assert list(a) == list(b)
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=k)


def test_the_learner_joins_the_group_shards_the_data_and_shows_progress_on_rank_0_only(ranks):
    r0, r1 = ranks
    assert (r0['rank'], r1['rank'], r0['world_size']) == (0, 1, 2) and 'gloo' in r0['backend']
    assert 'DistributedCallback' in r0['cbs'] and 'DistributedCallback' in r1['cbs']
    assert 'ProgressCallback' in r0['cbs'] and 'ProgressCallback' not in r1['cbs']
    assert not r0['joined_before_fit'] and not r1['joined_before_fit']   # Learner() joins nothing; the fit does
    for r in ranks:
        ld = r['loaders']
        assert ((ld['train_bs'], ld['train_len'], ld['train_sampler'], ld['train_shuffle'])
                == (8, 4, 'DistributedSampler', True))
        assert ld['valid_sampler'] == 'ShardSampler'
    assert r0['loaders']['valid_indices'] == list(range(0, 21, 2))
    assert r1['loaders']['valid_indices'] == list(range(1, 21, 2))
    # the effective batch size is printed by rank 0 at the start of the fits whose batch composition changed
    # (the learners' first fits, the second and third learners' in their range tests, and the change to accumulation)
    assert r1['stdout'] == ''
    lines = [l for l in r0['stdout'].splitlines() if 'effective batch size' in l]
    assert lines == ['DistributedDataParallel: 2 processes x batch 8 x 1 accumulation steps = effective batch size 16',
                     'DistributedDataParallel: 2 processes x batch 8 x 1 accumulation steps = effective batch size 16',
                     'DistributedDataParallel: 2 processes x batch 8 x 1 accumulation steps = effective batch size 16',
                     'DistributedDataParallel: 2 processes x batch 4 x 2 accumulation steps = effective batch size 16',
                     'DistributedDataParallel: 2 processes x batch 8 x 1 accumulation steps = effective batch size 16']


def test_fit_matches_one_process_on_the_same_global_batches(ranks):
    r0, r1 = ranks
    f0, f1 = r0['fit'], r1['fit']
    _assert_same_state(f0['state'], f1['state'])             # bitwise the same on both ranks
    assert f0['hps'] == f1['hps'] and f0['losses'] == f1['losses'] and f0['epochs'] == f1['epochs']
    assert f0['effective_bs'] == f1['effective_bs'] == 16
    # learn.model is the DDP wrapper while training, the user's module otherwise; no 'module.' prefix anywhere
    assert f0['probe']['train_type'] == '_DDP' and f0['probe']['after_type'] == 'Sequential'
    assert f0['probe']['train_keys'] == list(f0['state']) and not any(k.startswith('module.') for k in f0['state'])

    learn, sampler = _one_process_learner(per_rank=ddp_script.BS)
    assert sampler.batches(0) != sampler.batches(1)           # set_epoch mattered: each epoch its own order
    learn.fit_one_cycle(2, max_lr=0.5, wd=1e-2)
    # ranks started from different weights: DDP broadcast rank 0's, the ones the one process starts from
    _assert_same_state(f0['state'], learn.model.state_dict(), rtol=1e-4, atol=1e-5)
    assert f0['hps'] == learn.recorder.hps                   # the schedule is a function of the step alone
    assert f0['losses'] == pytest.approx(learn.recorder.losses, rel=1e-4, abs=1e-6)   # the global batches' losses
    for e_ddp, e_one in zip(f0['epochs'], learn.recorder.epochs):   # validation reduced over unequal shares
        for k in ('train_loss', 'valid_loss', 'accuracy'):
            assert e_ddp[k] == pytest.approx(e_one[k], rel=1e-4, abs=1e-6)
    v = learn.validate()
    for r in ranks:
        assert r['fit']['validate'] == pytest.approx(v, rel=1e-4, abs=1e-6)


def test_lr_finder_stops_together_and_restores_the_weights(ranks):
    l0, l1 = ranks[0]['lr_find'], ranks[1]['lr_find']
    assert l0['stopped_early'] and l1['stopped_early'] and 3 <= len(l0['lrs']) < 60
    assert l0['lrs'] == l1['lrs'] and l0['losses'] == l1['losses']   # one schedule, one loss, one stop
    # the hold check's probes read end losses averaged over ranks: the same probes and pick everywhere
    assert l0['held'] and l0['held'] == l1['held'] and l0['suggestion'] == l1['suggestion'] in l0['held']['lrs']
    for l in (l0, l1):
        _assert_same_state(l['before'], l['after'])
        assert l['model_type'] == 'Sequential'
    v0, v1 = ranks[0]['lr_find_valid'], ranks[1]['lr_find_valid']
    assert len(v0['valid_losses']) == 3 and v0['valid_losses'] == v1['valid_losses']   # reduced over both shares
    _assert_same_state(v0['after'], l0['before'])
    e0, e1 = ranks[0]['lr_find_extended'], ranks[1]['lr_find_extended']
    assert e0['extended'] and e1['extended'] and e0['lrs'] == e1['lrs']
    # two ranks of 8: 16 samples a step, so the default sweep is 200 steps (100 of 32 samples) and the longer one
    # 600; that one read again on another data order, the same one on every rank
    assert e0['replicate_losses'] == e1['replicate_losses'] != e0['losses'] and len(e0['replicate_losses']) == 600
    assert e0['steps'] == e1['steps'] == 1400 + e0['held_steps'] and e0['held_steps'] == e1['held_steps']
    _assert_same_state(e0['after'], e0['before'])


def test_lr_find_reads_the_inputs_scale_over_the_global_batch(ranks):
    """Inputs x 100 under AdamW: the scale that lowers the suggestion is the root mean square over both ranks'
    first batches (not either share's), so both ranks suggest the same lr."""
    s0, s1 = ranks[0]['lr_find_scaled'], ranks[1]['lr_find_scaled']
    (sq0, n0), (sq1, n1) = s0['own'], s1['own']
    assert sq0 != sq1 and n0 == n1 > 0   # the shares differ
    assert s0['input_rms'] == s1['input_rms'] == pytest.approx(((sq0 + sq1) / (n0 + n1)) ** 0.5, rel=1e-12)
    assert s0['input_rms'] > 16 and s0['suggestion'] == s1['suggestion']


def test_search_trials_measure_the_validation_subset_over_all_ranks(ranks):
    t0, t1 = ranks[0]['trial'], ranks[1]['trial']
    assert len(t0['valid_losses']) == 3 and t0['valid_losses'] == t1['valid_losses']   # one decision on every rank
    # before training, the subset (all of each rank's share) gives the whole validation set's loss
    assert t0['valid_losses'][0] == pytest.approx(ranks[0]['fit']['validate']['valid_loss'], rel=1e-5)
    _assert_same_state(t0['after'], ranks[0]['lr_find']['before'])
    h0, h1 = ranks[0]['hold_trial'], ranks[1]['hold_trial']   # a hold probe too: tune's decision above S
    assert len(h0['valid_losses']) == 4 and h0['valid_losses'] == h1['valid_losses'] and h0['score'] == h1['score']
    _assert_same_state(h0['after'], ranks[0]['lr_find']['before'])


def test_accumulation_all_reduces_only_when_stepping_and_matches_one_process(ranks):
    a0, a1 = ranks[0]['accum'], ranks[1]['accum']
    assert ranks[0]['accum_effective_bs_before_fit'] == 16     # 4 per process x 2 processes x 2 batches
    assert (a0['batches'], a0['steps']) == (8, 4)
    assert a0['allreduces'] == a1['allreduces'] == a0['steps']   # one bucket per step; none on the other batches
    _assert_same_state(a0['state'], a1['state'])
    learn, _ = _one_process_learner(per_rank=4 * 2)
    learn.fit(1, lr=0.3)
    assert learn.step_count == 4
    _assert_same_state(a0['state'], learn.model.state_dict(), rtol=1e-4, atol=1e-5)


def test_a_stop_seen_by_one_rank_stops_all(ranks):
    assert ranks[0]['stop'] == ranks[1]['stop'] == {'steps': 3, 'model_type': 'Sequential'}
