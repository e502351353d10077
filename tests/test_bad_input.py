"""Bad input, table-driven: every case must fail with an error that names what is wrong, before any
weight, optimizer state or recorded history changes."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import onecycle as oc
from onecycle import Learner
from onecycle.data import tensor_dls
from onecycle.models import mlp

LR = 1e-2


def _empty_dl():
    return DataLoader(TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)


def _learner(learn, **kw):
    "A second Learner on the fixture's model and data, with one argument changed."
    args = dict(model=learn.model, dls=learn.dls, loss_func=learn.loss_func, device='cpu', progress=False)
    args.update(kw)
    return Learner(args.pop('model'), args.pop('dls'), args.pop('loss_func'), **args)


def _fit_with_loss(learn, loss_func):
    learn.loss_func = loss_func
    learn.fit(1)


def _fit_with_meta_param(learn, tmp_path):
    learn.model.register_parameter('extra', nn.Parameter(torch.empty(3, device='meta')))
    learn.fit(1)


def _load_other_model(learn, tmp_path):
    other = _learner(learn, model=nn.Sequential(nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2)))
    other.save(tmp_path / 'other.pt')
    learn.load(tmp_path / 'other.pt')


def _saved(learn, tmp_path):
    return learn.save(tmp_path / 'ok.pt')


# (id, call(learn, tmp_path), exception type, regex the message must match)
CASES = [
    # --- Learner ----------------------------------------------------------------------------------
    ('learner_model_not_module', lambda l, t: _learner(l, model='net'), TypeError, 'model must be a torch.nn.Module'),
    ('learner_loss_not_callable', lambda l, t: _learner(l, loss_func=3), TypeError, 'loss_func must be callable'),
    ('learner_opt_func_str', lambda l, t: _learner(l, opt_func='adam'), TypeError, 'opt_func must be callable'),
    ('learner_lr_negative', lambda l, t: _learner(l, lr=-1.), ValueError, r'lr must be > 0'),
    ('learner_lr_nan', lambda l, t: _learner(l, lr=math.nan), ValueError, 'lr must be finite'),
    ('learner_wd_negative', lambda l, t: _learner(l, wd=-0.1), ValueError, r'wd must be >= 0'),
    ('learner_n_inp_zero', lambda l, t: _learner(l, n_inp=0), ValueError, r'n_inp must be an integer >= 1'),
    ('learner_metric_not_callable', lambda l, t: _learner(l, metrics=[3]), TypeError, 'metrics must be callable'),
    ('learner_dls_int', lambda l, t: _learner(l, dls=5), TypeError, 'dls must be a pair'),
    ('learner_meta_model', lambda l, t: _learner(l, model=nn.Linear(8, 2, device='meta')), ValueError, "'meta' device"),
    ('learner_meta_device', lambda l, t: _learner(l, device='meta'), ValueError, "device must not be 'meta'"),
    ('learner_splitter_empty', lambda l, t: _learner(l, splitter=lambda m: []), ValueError, 'splitter must return'),
    # --- fit --------------------------------------------------------------------------------------
    ('fit_zero_epochs', lambda l, t: l.fit(0), ValueError, r'n_epoch must be an integer >= 1'),
    ('fit_float_epochs', lambda l, t: l.fit(1.5), TypeError, 'n_epoch must be an integer'),
    ('fit_bool_epochs', lambda l, t: l.fit(True), TypeError, 'n_epoch must be an integer'),
    ('fit_lr_zero', lambda l, t: l.fit(1, lr=0), ValueError, r'lr must be > 0'),
    ('fit_lr_slice_no_stop', lambda l, t: l.fit(1, lr=slice(1e-3, None)), ValueError, 'lr slice needs a stop'),
    ('fit_wd_negative', lambda l, t: l.fit(1, wd=-1), ValueError, r'wd must be >= 0'),
    ('fit_cbs_int', lambda l, t: l.fit(1, cbs=[3]), TypeError, 'cbs must be callbacks'),
    ('fit_resume_float', lambda l, t: l.fit(1, resume=3.5), TypeError, 'resume must be a checkpoint path'),
    ('fit_resume_missing', lambda l, t: l.fit(1, resume=t / 'missing.pt'), FileNotFoundError, 'no checkpoint'),
    ('fit_resume_nothing', lambda l, t: _learner(l).fit(1, resume=True), oc.CheckpointError, 'no fit to continue'),
    ('fit_empty_loader', lambda l, t: (setattr(l, 'dls', oc.DataLoaders(_empty_dl())), l.fit(1)),
     ValueError, 'dls.train is empty'),
    ('fit_empty_valid_loader', lambda l, t: (setattr(l, 'dls', oc.DataLoaders(l.dls.train, _empty_dl())), l.fit(1)),
     ValueError, 'dls.valid is empty'),
    ('fit_loss_not_scalar', lambda l, t: _fit_with_loss(l, nn.CrossEntropyLoss(reduction='none')), ValueError,
     r'loss_func must return a scalar \(0-d\) tensor, got one of shape \(16,\)'),
    ('fit_loss_not_tensor', lambda l, t: _fit_with_loss(l, lambda p, y: 1.0),
     TypeError, 'loss_func must return a tensor'),
    ('fit_model_param_on_meta', _fit_with_meta_param,
     ValueError, 'parameters or buffers on meta but the learner trains on cpu'),
    ('validate_empty', lambda l, t: l.validate(_empty_dl()), ValueError, 'dl is empty'),
    # --- fit_one_cycle ----------------------------------------------------------------------------
    ('1cycle_cyc_len_zero', lambda l, t: l.fit_one_cycle(0, LR), ValueError, 'cyc_len'),
    ('1cycle_max_lr_zero', lambda l, t: l.fit_one_cycle(1, 0.), ValueError, r'max_lr must be > 0'),
    ('1cycle_max_lr_negative', lambda l, t: l.fit_one_cycle(1, -1e-3), ValueError, r'max_lr must be > 0'),
    ('1cycle_max_lr_str', lambda l, t: l.fit_one_cycle(1, 'fast'), TypeError, 'max_lr must be a number'),
    ('1cycle_max_lr_per_group_mismatch', lambda l, t: l.fit_one_cycle(1, [1e-3, 1e-2]),
     ValueError, '2 learning rates for 1 param groups'),
    ('1cycle_pct_start_zero', lambda l, t: l.fit_one_cycle(1, LR, pct_start=0),
     ValueError, r'pct_start must be in \(0, 1\)'),
    ('1cycle_pct_start_one', lambda l, t: l.fit_one_cycle(1, LR, pct_start=1),
     ValueError, r'pct_start must be in \(0, 1\)'),
    ('1cycle_pct_start_big', lambda l, t: l.fit_one_cycle(1, LR, pct_start=1.5), ValueError, 'pct_start'),
    ('1cycle_div_factor_zero', lambda l, t: l.fit_one_cycle(1, LR, div_factor=0),
     ValueError, r'div_factor must be > 0'),
    ('1cycle_div_factor_negative', lambda l, t: l.fit_one_cycle(1, LR, div_factor=-2),
     ValueError, r'div_factor must be > 0'),
    ('1cycle_final_div_zero', lambda l, t: l.fit_one_cycle(1, LR, final_div_factor=0), ValueError, 'final_div_factor'),
    ('1cycle_moms_above_one', lambda l, t: l.fit_one_cycle(1, LR, moms=(1.2, 0.8)),
     ValueError, r'moms must be in \[0, 1\)'),
    ('1cycle_moms_one', lambda l, t: l.fit_one_cycle(1, LR, moms=(1.0, 0.8)), ValueError, r'moms must be in \[0, 1\)'),
    ('1cycle_moms_negative', lambda l, t: l.fit_one_cycle(1, LR, moms=(0.95, -0.1)), ValueError, 'moms'),
    ('1cycle_moms_single', lambda l, t: l.fit_one_cycle(1, LR, moms=(0.95,)), TypeError, 'moms must be a pair'),
    ('1cycle_moms_str', lambda l, t: l.fit_one_cycle(1, LR, moms='high'), TypeError, 'moms must be a pair'),
    ('1cycle_start_epoch_zero', lambda l, t: l.fit_one_cycle(1, LR, start_epoch=0), ValueError, 'start_epoch'),
    ('1cycle_start_after_tot', lambda l, t: l.fit_one_cycle(1, LR, start_epoch=5, tot_epochs=3),
     ValueError, 'tot_epochs'),
    ('1cycle_runs_past_tot', lambda l, t: l.fit_one_cycle(3, LR, start_epoch=2, tot_epochs=3),
     ValueError, 'tot_epochs'),
    ('1cycle_tot_epochs_zero', lambda l, t: l.fit_one_cycle(1, LR, tot_epochs=0), ValueError, 'tot_epochs'),
    ('1cycle_anneal_unknown', lambda l, t: l.fit_one_cycle(1, LR, anneal_strategy='cubic'),
     ValueError, 'anneal_strategy must be one of'),
    ('1cycle_three_phase_pct', lambda l, t: l.fit_one_cycle(1, LR, three_phase=True, pct_start=0.6),
     ValueError, 'pct_start must be below 0.5'),
    ('1cycle_wd_str', lambda l, t: l.fit_one_cycle(1, LR, wd='a'), TypeError, 'wd must be a number'),
    ('1cycle_callbacks_int', lambda l, t: l.fit_one_cycle(1, LR, callbacks=[3]), TypeError, 'cbs must be callbacks'),
    ('1cycle_resume_other_length', lambda l, t: l.fit_one_cycle(2, LR, resume=True),
     oc.CheckpointError, 'fit of 1 epochs, this one has 2'),
    ('fit_resume_file_other_length', lambda l, t: l.fit(3, resume=_saved(l, t)),
     oc.CheckpointError, 'fit of 1 epochs, this one has 3'),
    # --- training callbacks -----------------------------------------------------------------------
    ('accum_zero', lambda l, t: oc.GradAccumulation(0), ValueError, 'n_batches'),
    ('accum_float', lambda l, t: oc.GradAccumulation(2.5), TypeError, 'n_batches'),
    ('mixed_precision_fp32', lambda l, t: oc.MixedPrecision(dtype=torch.float32), ValueError, 'dtype must be one of'),
    ('clip_zero', lambda l, t: oc.GradientClipping(0), ValueError, r'max_norm must be > 0'),
    ('clip_norm_type_negative', lambda l, t: oc.GradientClipping(1., norm_type=-1), ValueError, 'norm_type'),
    ('param_sched_empty', lambda l, t: oc.ParamScheduler({}), TypeError, 'scheds must be a non-empty dict'),
    ('param_sched_not_callable', lambda l, t: oc.ParamScheduler({'lr': 3}),
     TypeError, "schedule for 'lr' must be callable"),
    ('param_sched_total_zero', lambda l, t: oc.ParamScheduler({'lr': oc.Linear(1e-3, 1e-2)}, total_steps=0),
     ValueError, 'total_steps'),
    ('param_sched_unknown_hyper', lambda l, t: l.fit(1, cbs=oc.ParamScheduler({'nope': oc.Constant(1.)})), ValueError,
     "no hyper-parameter 'nope'"),
    ('one_cycle_sched_anneal', lambda l, t: oc.OneCycleScheduler(LR, anneal_strategy='x'),
     ValueError, 'anneal_strategy'),
    ('cyc_mom_single', lambda l, t: oc.CyclicalMomentum(moms=(0.9,)), TypeError, 'moms'),
    ('divergence_action', lambda l, t: oc.DivergenceGuard(action='ignore'), ValueError, 'action must be one of'),
    ('divergence_max_skips', lambda l, t: oc.DivergenceGuard(max_skips=-1), ValueError, 'max_skips'),
    # --- LR finder --------------------------------------------------------------------------------
    ('finder_end_below_start', lambda l, t: oc.LRFinder(start_lr=1., end_lr=0.1),
     ValueError, 'end_lr must be greater than start_lr'),
    ('lr_find_num_it_one', lambda l, t: l.lr_find(num_it=1), ValueError, 'num_it'),
    ('lr_find_suggest_unknown', lambda l, t: l.lr_find(suggest='best'), ValueError, 'suggest must be one of'),
    # --- schedules --------------------------------------------------------------------------------
    ('linear_str', lambda l, t: oc.Linear('a', 1), TypeError, 'start must be a number'),
    ('exponential_zero', lambda l, t: oc.Exponential(0, 1), ValueError, r'start must be > 0'),
    ('constant_inf', lambda l, t: oc.Constant(math.inf), ValueError, 'value must be finite'),
    ('phases_empty', lambda l, t: oc.Phases([], []), ValueError, 'scheds must hold at least one'),
    ('combine_not_one', lambda l, t: oc.combine([0.5, 0.6], [oc.Linear(0, 1), oc.Linear(1, 0)]),
     ValueError, 'pcts must be'),
    ('one_cycle_anneal', lambda l, t: oc.one_cycle(1, 2, 0, anneal_strategy='x'), ValueError, 'anneal_strategy'),
    # --- checkpoints ------------------------------------------------------------------------------
    ('save_path_int', lambda l, t: l.save(3), TypeError, 'path must be a str or os.PathLike'),
    ('save_path_dir', lambda l, t: l.save(t), ValueError, 'path must be a file'),
    ('save_with_opt_str', lambda l, t: l.save(t / 'a.pt', with_opt='yes'), TypeError, 'with_opt must be True or False'),
    ('load_missing', lambda l, t: l.load(t / 'missing.pt'), FileNotFoundError, 'no checkpoint'),
    ('load_with_rng_int', lambda l, t: l.load(_saved(l, t), with_rng=1), TypeError, 'with_rng must be True or False'),
    ('load_other_model', _load_other_model, oc.CheckpointError, 'different model'),
    ('save_model_monitor_unknown', lambda l, t: l.fit(1, cbs=oc.SaveModel(t, monitor='acc')),
     ValueError, "monitor='acc' is not recorded"),
    ('save_model_mode', lambda l, t: oc.SaveModel(t, mode='up'), ValueError, 'mode must be one of'),
    ('save_model_every_zero', lambda l, t: oc.SaveModel(t, every_n_batches=0), ValueError, 'every_n_batches'),
    ('save_model_nothing', lambda l, t: oc.SaveModel(t, save_best=False, save_last=False),
     ValueError, 'nothing would be saved'),
    ('save_model_dir_int', lambda l, t: oc.SaveModel(3), TypeError, 'dirname'),
    # --- data and models --------------------------------------------------------------------------
    ('tensor_dls_bs_zero',
     lambda l, t: tensor_dls(torch.zeros(4, 8), torch.zeros(4), torch.zeros(4, 8), torch.zeros(4), bs=0),
     ValueError, 'bs'),
    ('mlp_one_size', lambda l, t: mlp(sizes=(3,)), ValueError, 'sizes'),
]


def _state(learn):
    "Everything a failure must leave alone: weights, optimizer state and hyper-parameters, recorded history."
    sd = {k: v.clone() for k, v in learn.model.state_dict().items()}
    return sd, copy.deepcopy(learn.opt.state_dict()), learn.recorder.state_dict()


def _same(a, b):
    (m1, o1, r1), (m2, o2, r2) = a, b
    assert set(m1) <= set(m2) and all(torch.equal(m1[k], m2[k]) for k in m1), 'model weights changed'
    assert o1['param_groups'] == o2['param_groups'], 'optimizer hyper-parameters changed'
    assert o1['state'].keys() == o2['state'].keys() and all(
        torch.equal(o1['state'][i][k], o2['state'][i][k]) for i in o1['state'] for k in o1['state'][i]
    ), 'optimizer state changed'
    assert r1 == r2, 'recorded history changed'


def test_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize('name,call,exc,match', CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly(name, call, exc, match, make_learner, tmp_path):
    learn = make_learner(opt_func=torch.optim.AdamW)
    learn.fit(1, lr=LR)   # some optimizer state and history that must survive
    before = _state(learn)
    with pytest.raises(exc, match=match):
        call(learn, tmp_path)
    _same(before, _state(learn))
