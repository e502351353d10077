"""Bad input across the public API, part two (tests/test_bad_input.py is part one; together over 150 cases):
each call fails with a TypeError / ValueError / CheckpointError naming what is wrong, before any weight,
optimizer state, hyper-parameter, gradient, callback list or recorded history changes (compared bitwise)."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import onecycle as oc
from helpers import same
from onecycle import Learner

CE = nn.CrossEntropyLoss()


def _learner(learn, **kw):
    args = dict(model=learn.model, dls=learn.dls, loss_func=learn.loss_func, device='cpu', progress=False)
    args.update(kw)
    return Learner(args.pop('model'), args.pop('dls'), args.pop('loss_func'), **args)


def _frozen(learn):
    for p in learn.model.parameters(): p.requires_grad_(False)
    try: learn.fit(1)
    finally:
        for p in learn.model.parameters(): p.requires_grad_(True)


def _n_inp_all(learn):
    learn.n_inp = 2
    try: learn.fit(1)
    finally: learn.n_inp = 1


def _rewritten(learn, t, edit):
    path = learn.save(t / 'good.pt')
    ck = torch.load(path, weights_only=True)
    edit(ck)
    return oc.atomic_save(ck, t / 'bad.pt')


def _flipped(learn, t, pos):
    path = learn.save(t / 'good.pt')
    b = bytearray(path.read_bytes()); b[pos % len(b)] ^= 0x10
    (t / 'bad.pt').write_bytes(bytes(b))
    return t / 'bad.pt'


def _other_opt_ckpt(learn, t, opt_func):
    other = _learner(learn, model=copy.deepcopy(learn.model), opt_func=opt_func)
    other.fit(1)
    return other.save(t / 'other.pt')


def _bad_sched(v):
    return oc.ParamScheduler({'lr': lambda p: v})


# (id, call(learn, tmp_path), exception type, regex the message must match)
CASES = [
    # --- Learner arguments --------------------------------------------------------------------------
    ('learner_wd_bn_bias_str', lambda l, t: _learner(l, wd_bn_bias='no'),
     TypeError, 'wd_bn_bias must be True or False'),
    ('learner_progress_str', lambda l, t: _learner(l, progress='no'), TypeError, 'progress must be True or False'),
    ('learner_guard_zero', lambda l, t: _learner(l, guard=0), ValueError, "guard must be True, False or 'auto'"),
    ('learner_guard_str', lambda l, t: _learner(l, guard='yes'), ValueError, "guard must be True, False or 'auto'"),
    ('learner_guard_none', lambda l, t: _learner(l, guard=None), ValueError, "guard must be"),
    ('learner_loss_class', lambda l, t: _learner(l, loss_func=nn.CrossEntropyLoss), TypeError,
     r'loss_func is the class CrossEntropyLoss: pass an instance'),
    ('learner_no_params', lambda l, t: _learner(l, model=nn.ReLU()), ValueError, 'has no parameters'),
    ('learner_opt_func_none', lambda l, t: _learner(l, opt_func=lambda ps, lr: None), TypeError,
     'opt_func must return a torch.optim.Optimizer'),
    ('learner_opt_func_list', lambda l, t: _learner(l, opt_func=lambda ps, lr: [ps]), TypeError,
     'opt_func must return a torch.optim.Optimizer'),
    ('learner_lbfgs', lambda l, t: _learner(l, opt_func=torch.optim.LBFGS, wd=0.1), TypeError, 'LBFGS'),
    ('learner_cbs_none_item', lambda l, t: _learner(l, cbs=[None]), TypeError, r'cbs\[0\] is NoneType'),
    ('learner_cbs_str', lambda l, t: _learner(l, cbs='SaveModel'), TypeError, 'cbs must be callbacks'),
    ('learner_cbs_int_item', lambda l, t: _learner(l, cbs=[oc.Recorder(), 5]), TypeError, r'cbs\[1\] is int'),
    ('learner_lr_str', lambda l, t: _learner(l, lr='1e-3'), TypeError, 'lr must be a number'),
    ('learner_lr_inf', lambda l, t: _learner(l, lr=math.inf), ValueError, 'lr must be finite'),
    ('learner_lr_list_neg', lambda l, t: _learner(l, lr=[1e-3, -1]), ValueError, r'lr must be > 0'),
    ('learner_wd_str', lambda l, t: _learner(l, wd='0.1'), TypeError, 'wd must be a number'),
    ('learner_wd_nan', lambda l, t: _learner(l, wd=math.nan), ValueError, 'wd must be finite'),
    ('learner_n_inp_float', lambda l, t: _learner(l, n_inp=1.5), TypeError, 'n_inp must be an integer'),
    ('learner_n_inp_bool', lambda l, t: _learner(l, n_inp=True), TypeError, 'n_inp must be an integer'),
    ('learner_splitter_str', lambda l, t: _learner(l, splitter='head'), TypeError, 'splitter must be callable'),
    ('learner_metrics_str_item', lambda l, t: _learner(l, metrics=['accuracy']), TypeError, 'metrics must be callable'),
    ('learner_dls_triple', lambda l, t: _learner(l, dls=(l.dls.train, l.dls.valid, l.dls.valid)), TypeError,
     'dls must be a pair'),
    ('learner_model_class', lambda l, t: _learner(l, model=nn.Linear), TypeError, 'model must be a torch.nn.Module'),
    # --- fit arguments ------------------------------------------------------------------------------
    ('fit_lr_wd_per_group', lambda l, t: l.fit(1, lr=0.5, wd=[0.1, 0.2]), ValueError,
     r'wd has 2 values but the optimizer has 1 param group'),
    ('fit_lr_per_group', lambda l, t: l.fit(1, lr=[0.1, 0.2]), ValueError, r'lr has 2 values but the optimizer'),
    ('fit_n_epoch_str', lambda l, t: l.fit('3'), TypeError, 'n_epoch must be an integer'),
    ('fit_n_epoch_neg', lambda l, t: l.fit(-2), ValueError, 'n_epoch must be an integer >= 1'),
    ('fit_n_epoch_np_float', lambda l, t: l.fit(np.float64(2)), TypeError, 'n_epoch must be an integer'),
    ('fit_cbs_none_item', lambda l, t: l.fit(1, cbs=[None]), TypeError, r'cbs\[0\] is NoneType'),
    ('fit_cbs_class_not_cb', lambda l, t: l.fit(1, cbs=[int]), TypeError, 'cbs must be callbacks'),
    ('fit_lr_nan', lambda l, t: l.fit(1, lr=math.nan), ValueError, 'lr must be finite'),
    ('fit_wd_list_neg', lambda l, t: l.fit(1, wd=[-0.1]), ValueError, r'wd must be >= 0'),
    ('fit_resume_list', lambda l, t: l.fit(1, resume=[1]), TypeError, 'resume must be a checkpoint path'),
    ('fit_frozen_model', lambda l, t: _frozen(l), ValueError, 'frozen'),
    ('fit_n_inp_no_target', lambda l, t: _n_inp_all(l), ValueError, r'n_inp=2 are inputs: nothing is left'),
    ('fit_valid_str', lambda l, t: l.validate('abc'), TypeError, 'dl must be a DataLoader'),
    ('fit_valid_dict', lambda l, t: l.validate({'a': 1}), TypeError, 'dl must be a DataLoader'),
    # --- the one-liners -----------------------------------------------------------------------------
    ('ocy_three_phase_str', lambda l, t: l.fit_one_cycle(1, three_phase='no'), TypeError,
     'three_phase must be True or False'),
    ('ocy_pct_start_two', lambda l, t: l.fit_one_cycle(1, pct_start=2), ValueError, r'pct_start must be in \(0, 1\)'),
    ('ocy_pct_start_nan', lambda l, t: l.fit_one_cycle(1, pct_start=math.nan), ValueError, 'pct_start must be finite'),
    ('ocy_div_factor_tiny', lambda l, t: l.fit_one_cycle(1, 1e-2, div_factor=1e-320), ValueError,
     r'div_factor=1e-320 and final_div_factor=10000.0 give max_lr=0.01 a starting lr of inf'),
    ('ocy_final_div_zero', lambda l, t: l.fit_one_cycle(1, final_div_factor=0), ValueError, 'final_div_factor'),
    ('ocy_moms_four', lambda l, t: l.fit_one_cycle(1, moms=(0.9, 0.8, 0.9, 0.8)), TypeError, 'moms must be a pair'),
    ('ocy_moms_str', lambda l, t: l.fit_one_cycle(1, moms='high'), TypeError, 'moms must be a pair'),
    ('ocy_moms_one', lambda l, t: l.fit_one_cycle(1, moms=(1.2, 0.8)), ValueError, r'moms must be in \[0, 1\)'),
    ('ocy_cbs_none_item', lambda l, t: l.fit_one_cycle(1, cbs=[None]), TypeError, r'cbs\[0\] is NoneType'),
    ('ocy_callbacks_none_item', lambda l, t: l.fit_one_cycle(1, callbacks=[None]), TypeError,
     r'cbs\[0\] is NoneType'),
    ('ocy_start_epoch_zero', lambda l, t: l.fit_one_cycle(1, start_epoch=0), ValueError, 'start_epoch'),
    ('ocy_max_lr_neg', lambda l, t: l.fit_one_cycle(1, max_lr=-1), ValueError, r'max_lr must be > 0'),
    ('ocy_max_lr_str', lambda l, t: l.fit_one_cycle(1, max_lr='big'), TypeError, 'max_lr must be a number'),
    ('ocy_anneal_bad', lambda l, t: l.fit_one_cycle(1, anneal_strategy='exp'), ValueError, 'anneal_strategy'),
    ('sgdr_cbs_none_item', lambda l, t: l.fit_sgdr(1, cbs=[None]), TypeError, r'cbs\[0\] is NoneType'),
    ('sgdr_cycles_zero', lambda l, t: l.fit_sgdr(0), ValueError, 'n_cycles'),
    ('sgdr_mult_float', lambda l, t: l.fit_sgdr(2, cycle_mult=1.5), TypeError, 'cycle_mult must be an integer'),
    ('flatcos_pct_one', lambda l, t: l.fit_flat_cos(1, pct_start=1.), ValueError, 'pct_start'),
    ('flatcos_cbs_none', lambda l, t: l.fit_flat_cos(1, callbacks=[None]), TypeError, r'cbs\[0\] is NoneType'),
    ('clr_base_above_max', lambda l, t: l.fit_clr(1, 1e-3, base_lr=1e-2), ValueError, 'base_lr must not exceed'),
    ('clr_three_moms', lambda l, t: l.fit_clr(1, 1e-2, moms=(0.95, 0.85, 0.9)), ValueError,
     r'moms must be a \(high, low\) pair'),
    ('clr_mode_bad', lambda l, t: l.fit_clr(1, 1e-2, mode='square'), ValueError, 'mode must be one of'),
    ('warmup_pct_neg', lambda l, t: l.fit_warmup_cos(1, warmup_pct=-0.1), ValueError, 'warmup_pct'),
    ('fine_tune_tot_epochs', lambda l, t: l.fine_tune(3, freeze_epochs=0, tot_epochs=2), ValueError, 'tot_epochs'),
    ('fine_tune_lr_mult', lambda l, t: l.fine_tune(1, freeze_epochs=0, lr_mult=0.5),
     ValueError, 'lr_mult must be >= 1'),
    ('fine_tune_unknown_kw', lambda l, t: l.fine_tune(1, freeze_epochs=0, bogus=1), TypeError, 'unexpected keyword'),
    ('fine_tune_one_group', lambda l, t: l.fine_tune(1), ValueError, 'at least two param groups'),
    # --- schedules ----------------------------------------------------------------------------------
    ('sched_gives_nan', lambda l, t: l.fit(1, cbs=[_bad_sched(math.nan)]), ValueError, 'gives nan at step 0'),
    ('sched_gives_inf', lambda l, t: l.fit(1, cbs=[_bad_sched(math.inf)]), ValueError, 'gives inf'),
    ('sched_gives_negative', lambda l, t: l.fit(1, cbs=[_bad_sched(-1e-3)]),
     ValueError, r"lr must be a finite number >= 0"),
    ('sched_gives_str', lambda l, t: l.fit(1, cbs=[_bad_sched('x')]), TypeError, 'returned str'),
    ('sched_late_nan', lambda l, t: l.fit(1, cbs=[oc.ParamScheduler({'lr': lambda p: 1e-3 if p < 0.5 else math.nan})]),
     ValueError, "the 'lr' schedule of param group 0 gives nan"),
    ('sched_not_dict', lambda l, t: oc.ParamScheduler([lambda p: 1.]), TypeError, 'scheds must be a non-empty dict'),
    ('one_cycle_pct_two', lambda l, t: oc.one_cycle(1e-3, 1e-2, 1e-5, pct_start=2), ValueError, 'pct_start'),
    ('one_cycle_pct_nan', lambda l, t: oc.one_cycle(1e-3, 1e-2, 1e-5, pct_start=math.nan), ValueError, 'pct_start'),
    ('one_cycle_three_phase_str', lambda l, t: oc.one_cycle(1e-3, 1e-2, 1e-5, three_phase='no'), TypeError,
     'three_phase must be True or False'),
    ('one_cycle_peak_nan', lambda l, t: oc.one_cycle(1e-3, math.nan, 1e-5), ValueError, 'peak must be finite'),
    ('onecycle_sched_three_phase_int', lambda l, t: oc.OneCycleScheduler(1e-2, three_phase=1), TypeError,
     'three_phase must be True or False'),
    ('cycmom_three_phase_str', lambda l, t: oc.CyclicalMomentum(three_phase='yes'), TypeError, 'three_phase'),
    # --- tuning -------------------------------------------------------------------------------------
    ('lr_find_stop_div_str', lambda l, t: l.lr_find(stop_div='no'), TypeError, 'stop_div must be True or False'),
    ('lr_find_num_it_zero', lambda l, t: l.lr_find(num_it=0), ValueError, 'num_it'),
    ('lr_find_suggest_bad', lambda l, t: l.lr_find(suggest='best'), ValueError, 'suggest must be one of'),
    ('tune_search_wd_str', lambda l, t: oc.tune(l, search_wd='no'), TypeError, 'search_wd must be True or False'),
    ('tune_search_moms_str', lambda l, t: oc.tune(l, search_moms='no'), TypeError, 'search_moms must be True or False'),
    ('tune_budget_small', lambda l, t: oc.tune(l, budget=10), ValueError, 'budget'),
    # --- checkpoints --------------------------------------------------------------------------------
    ('load_adamw_into_sgd', lambda l, t: _learner(l, opt_func=torch.optim.SGD).load(
        _other_opt_ckpt(l, t, torch.optim.AdamW)), oc.CheckpointError, "optimizer is AdamW, this learner's is SGD"),
    ('load_rmsprop_into_adamw', lambda l, t: l.load(_other_opt_ckpt(l, t, torch.optim.RMSprop)), oc.CheckpointError,
     "optimizer is RMSprop, this learner's is AdamW"),
    ('resume_sgd_ckpt', lambda l, t: l.fit(1, resume=_other_opt_ckpt(l, t, torch.optim.SGD)), oc.CheckpointError,
     "optimizer is SGD"),
    ('load_no_recorder', lambda l, t: l.load(_rewritten(l, t, lambda ck: ck.pop('recorder'))), oc.CheckpointError,
     "no 'recorder' entry"),
    ('load_no_rng', lambda l, t: l.load(_rewritten(l, t, lambda ck: ck.pop('rng'))), oc.CheckpointError,
     "no 'rng' entry"),
    ('load_rng_damaged',
     lambda l, t: l.load(_rewritten(l, t, lambda ck: ck['rng'].__setitem__('torch', torch.zeros(2)))),
     oc.CheckpointError, "'rng' cannot be put back"),
    ('load_flipped_middle', lambda l, t: l.load(_flipped(l, t, 4000)), oc.CheckpointError, 'damaged'),
    ('load_flipped_last', lambda l, t: l.load(_flipped(l, t, -1)), oc.CheckpointError, 'damaged'),
    ('load_flipped_first', lambda l, t: l.load(_flipped(l, t, 0)), oc.CheckpointError, 'damaged'),
    ('load_truncated', lambda l, t: (t.joinpath('cut.pt').write_bytes(l.save(t / 'g.pt').read_bytes()[:-90]),
                                     l.load(t / 'cut.pt')), oc.CheckpointError, 'damaged|could not read'),
    ('load_with_opt_str', lambda l, t: l.load(l.save(t / 'g.pt'), with_opt='no'), TypeError, 'with_opt must be True'),
    ('load_with_rng_int', lambda l, t: l.load(l.save(t / 'g.pt'), with_rng=1), TypeError, 'with_rng must be True'),
    ('load_path_int', lambda l, t: l.load(3), TypeError, 'path must be a str or os.PathLike'),
    ('load_dir', lambda l, t: l.load(t), ValueError, 'path must be a file'),
    ('save_path_none', lambda l, t: l.save(None), TypeError, 'path must be a str or os.PathLike'),
    ('save_with_opt_str', lambda l, t: l.save(t / 'a.pt', with_opt='yes'), TypeError, 'with_opt must be True'),
    ('savemodel_dir_is_file', lambda l, t: (t.joinpath('f').write_text('x'), oc.SaveModel(t / 'f')), ValueError,
     'is a file'),
    ('savemodel_every_zero', lambda l, t: oc.SaveModel(t, every_n_batches=0), ValueError, 'every_n_batches'),
    ('savemodel_mode_bad', lambda l, t: oc.SaveModel(t, mode='up'), ValueError, 'mode must be one of'),
    ('savemodel_name_sep', lambda l, t: oc.SaveModel(t, name='a/b'), ValueError, 'plain file stem'),
    # --- callbacks ----------------------------------------------------------------------------------
    ('add_cb_none', lambda l, t: l.add_cb(None), TypeError, 'cb must be callbacks'),
    ('add_cbs_none_item', lambda l, t: l.add_cbs([oc.Recorder(), None]), TypeError, r'cbs\[1\] is NoneType'),
    ('grad_accum_zero', lambda l, t: oc.GradAccumulation(0), ValueError, 'n_batches'),
    ('clip_negative', lambda l, t: oc.GradientClipping(-1.), ValueError, 'max_norm'),
    ('guard_action_bad', lambda l, t: oc.DivergenceGuard(action='ignore'), ValueError, 'action must be one of'),
    ('guard_check_grads_str', lambda l, t: oc.DivergenceGuard(check_grads='yes'), TypeError, 'check_grads'),
    ('mixed_precision_dtype', lambda l, t: oc.MixedPrecision(torch.float32), ValueError, 'dtype must be one of'),
]


def everything(learn) -> dict:
    opt = learn.opt.state_dict()
    return {'model': {k: v.clone() for k, v in learn.model.state_dict().items()},
            'opt_state': copy.deepcopy(opt['state']), 'groups': copy.deepcopy(opt['param_groups']),
            'grads': [None if p.grad is None else p.grad.clone() for p in learn.model.parameters()],
            'requires_grad': [p.requires_grad for p in learn.model.parameters()],
            'cbs': list(learn.cbs), 'recorder': copy.deepcopy(learn.recorder.state_dict()),
            'hyper': (learn.n_inp, learn.wd, learn.loss_func, learn.opt)}


def test_table_is_large_enough():
    import test_bad_input
    assert len(CASES) >= 100 and len({c[0] for c in CASES}) == len(CASES)
    assert len(CASES) + len(test_bad_input.CASES) >= 150


@pytest.mark.parametrize('name,call,exc,match', CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly_and_changes_nothing(name, call, exc, match, make_learner, tmp_path):
    learn = make_learner(opt_func=torch.optim.AdamW)
    learn.fit(1, lr=1e-2)
    learn.model[0].weight.grad = torch.full_like(learn.model[0].weight, 0.5)   # a gradient that must survive too
    before = everything(learn)
    with pytest.raises(exc, match=match):
        call(learn, tmp_path)
    assert same(everything(learn), before), 'the learner changed'
    learn.model[0].weight.grad = None
    learn.fit(1)   # and it trains on
