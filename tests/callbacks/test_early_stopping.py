"""EarlyStopping: patience, min_delta, modes, waiting for the annealing phase of 1cycle, resume, trials;
and SaveModel(load_best=True), which puts the best epoch's weights back when the fit ends."""
import pytest
import torch

from onecycle import Callback, CancelFitException, SaveModel
from onecycle.callbacks.early_stopping import EarlyStopping

from helpers import ScriptedMetric


def _learner(make_learner, values, **kw):
    s = ScriptedMetric(values)
    learn = make_learner(metrics={'score': s}, opt_func=torch.optim.AdamW, **kw)
    s.learn = learn
    return learn


def _epochs(learn): return [r['epoch'] for r in learn.recorder.epochs]


@pytest.mark.parametrize('values, kw, last', [
    ([3, 2, 2.5, 2.6, 2.7, 1, 1, 1], dict(patience=3), 4),            # best at 1, three epochs without: stop after 4
    ([3, 2, 2.5, 1.9, 2.7, 2.8, 2.9, 1], dict(patience=3), 6),        # 1.9 at epoch 3 resets the wait
    ([3, 2, 1.95, 1.92, 1.9, 1, 1, 1], dict(patience=2, min_delta=0.1), 3),   # small gains do not count
    ([3, 2, 2.5, 1, 1, 1, 1, 1], dict(patience=0), 2),                 # patience 0: the first epoch without
    ([1, 2, 3, 4, 5, 6, 7, 8], dict(patience=2, mode='max'), 7),       # always improving: runs to the end
    ([1, 2, 2, 2, 9, 9, 9, 9], dict(patience=2, mode='max'), 3),
    ([3, float('nan'), float('nan'), 1, 1, 1, 1, 1], dict(patience=2), 2),   # NaN never improves
])
def test_stops_after_patience_epochs_without_improvement(make_learner, values, kw, last):
    learn = _learner(make_learner, values)
    es = EarlyStopping('score', start_after=0, verbose=False, **{'mode': 'min', **kw})
    learn.fit(8, cbs=[es])
    assert _epochs(learn) == list(range(last + 1))
    assert es.stopped_epoch == (None if last == 7 else last)


def test_auto_mode_and_the_rows_it_reads(make_learner):
    learn = make_learner()
    assert EarlyStopping('valid_loss').mode == 'min' and EarlyStopping('accuracy').mode == 'max'
    assert EarlyStopping('error_rate').mode == 'min'
    with pytest.raises(ValueError, match="monitor='accuracy' is not recorded"):
        learn.fit(1, cbs=[EarlyStopping('accuracy')])
    assert learn.recorder.epochs == []


def test_one_cycle_counts_from_the_annealing_phase(make_learner, capsys):
    # epoch 0, at a low learning rate, is the best value; epochs 1-2 rise with the learning rate
    values = [0.1, 1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.4, 0.3, 0.2]
    learn = _learner(make_learner, values)
    es = EarlyStopping('score', mode='min', patience=3)
    learn.fit_one_cycle(10, 1e-3, pct_start=0.25, cbs=[es])
    # epochs ending by 25% of the fit (0 and 1) are not counted: best 0.9 at epoch 2, stop after epoch 5
    assert 0.24 < es.counts_from <= 0.25 and es.best_epoch == 2 and es.stopped_epoch == 5 and len(_epochs(learn)) == 6
    assert 'EarlyStopping: no improvement in score for 3 epochs since epoch 2 (score=0.9); stopped after epoch 5' \
        in capsys.readouterr().out
    # counting from the start, the low-lr epoch 0 would stop the fit in the middle of the warm-up
    learn = _learner(make_learner, values)
    es = EarlyStopping('score', mode='min', patience=3, start_after=0., verbose=False)
    learn.fit_one_cycle(10, 1e-3, pct_start=0.25, cbs=[es])
    assert es.stopped_epoch == 3
    # a fit without a 1cycle-style schedule counts every epoch; a fraction given counts from there
    learn = _learner(make_learner, values)
    es = EarlyStopping('score', mode='min', patience=3, verbose=False)
    learn.fit(10, cbs=[es])
    assert es.counts_from == 0 and es.stopped_epoch == 3
    learn = _learner(make_learner, values)
    es = EarlyStopping('score', mode='min', patience=3, start_after=0.5, verbose=False)
    learn.fit(10, cbs=[es])
    assert es.best_epoch == 9 and es.stopped_epoch is None and es.wait == 0


def test_flat_cos_waits_for_its_annealing_too(make_learner):
    learn = _learner(make_learner, [0.1] + [1.0] * 9)
    es = EarlyStopping('score', mode='min', patience=2, verbose=False)
    learn.fit_flat_cos(10, 1e-3, pct_start=0.75, cbs=[es])
    assert 0.7 < es.counts_from <= 0.75 and es.stopped_epoch is None and es.best_epoch == 7


class StopAt(Callback):
    "Interrupts the fit at the end of epoch `n` (after SaveModel has saved it)."
    order = 100
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.learn.epoch == self.n: raise CancelFitException()


@pytest.mark.parametrize('stop_at', [2, 3, 4])
def test_a_resumed_fit_stops_where_the_uninterrupted_one_does(make_learner, tmp_path, stop_at):
    values = [3, 2, 2.5, 2.6, 2.7, 1, 1, 1]
    full = _learner(make_learner, values, model_kw=dict(seed=1))
    es_full = EarlyStopping('score', mode='min', patience=3, start_after=0, verbose=False)
    full.fit(8, cbs=[es_full, SaveModel(tmp_path / 'full', 'score', mode='min')])
    assert es_full.stopped_epoch == 4

    part = _learner(make_learner, values, model_kw=dict(seed=1))
    part.fit(8, cbs=[EarlyStopping('score', mode='min', patience=3, start_after=0, verbose=False),
                     SaveModel(tmp_path / 'part', 'score', mode='min'), StopAt(stop_at)])
    again = _learner(make_learner, values, model_kw=dict(seed=1))
    es = EarlyStopping('score', mode='min', patience=3, start_after=0, verbose=False)
    again.fit(8, cbs=[es, SaveModel(tmp_path / 'part', 'score', mode='min')],
              resume=tmp_path / 'part' / 'model_last.pt')
    assert _epochs(again) == _epochs(full) == [0, 1, 2, 3, 4]
    assert es.state_dict() == es_full.state_dict() == {'best': 2.0, 'best_epoch': 1, 'wait': 3, 'stopped_epoch': 4}
    for a, b in zip(again.model.parameters(), full.model.parameters()): assert torch.equal(a, b)


def test_trials_are_left_alone(make_learner, tmp_path):
    learn = make_learner(cbs=[EarlyStopping(patience=0, start_after=0), SaveModel(tmp_path)])
    res = learn.lr_find(num_it=20, stop_div=False)
    assert len(res.lrs) == 20 and not any(tmp_path.iterdir())
    es = learn.cbs[[type(c) for c in learn.cbs].index(EarlyStopping)]
    assert es.stopped_epoch is None


@pytest.mark.parametrize('kw, err, match', [
    (dict(monitor=3), TypeError, 'monitor'), (dict(monitor=''), TypeError, 'monitor'),
    (dict(patience=-1), ValueError, 'patience'), (dict(patience=1.5), TypeError, 'patience'),
    (dict(min_delta=-0.1), ValueError, 'min_delta'), (dict(mode='down'), ValueError, 'mode'),
    (dict(start_after=1.0), ValueError, 'start_after'), (dict(start_after='warmup'), TypeError, 'start_after'),
    (dict(start_after=True), TypeError, 'start_after'), (dict(verbose=1), TypeError, 'verbose'),
])
def test_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match): EarlyStopping(**kw)


# --- SaveModel(load_best=True) ----------------------------------------------------------------------
class Weights(Callback):
    "The weights at the end of every epoch."
    order = 90
    def __init__(self): self.seen = []
    def after_epoch(self): self.seen.append({k: v.clone() for k, v in self.learn.model.state_dict().items()})


def _same(sd, model): return all(torch.equal(v, model.state_dict()[k]) for k, v in sd.items())


def test_load_best_puts_the_best_epoch_back(make_learner, tmp_path):
    learn = _learner(make_learner, [3, 1, 2, 2.5, 2.6, 2.7])
    w = Weights()
    sm = SaveModel(tmp_path, 'score', mode='min', load_best=True)
    learn.fit(6, 1e-2, cbs=[sm, w])
    assert sm.best_epoch == 1 and _same(w.seen[1], learn.model) and not _same(w.seen[-1], learn.model)
    # without load_best the last weights stay
    learn = _learner(make_learner, [3, 1, 2, 2.5, 2.6, 2.7])
    w = Weights()
    learn.fit(6, 1e-2, cbs=[SaveModel(tmp_path / 'b', 'score', mode='min'), w])
    assert _same(w.seen[-1], learn.model)


def test_load_best_with_early_stopping(make_learner, tmp_path):
    learn = _learner(make_learner, [3, 2, 1, 2.5, 2.6, 2.7, 0, 0])
    w = Weights()
    learn.fit(8, 1e-2, cbs=[SaveModel(tmp_path, 'score', mode='min', load_best=True),
                            EarlyStopping('score', mode='min', patience=2, start_after=0, verbose=False), w])
    assert len(learn.recorder.epochs) == 5 and _same(w.seen[2], learn.model)


def test_load_best_not_after_a_failed_fit(make_learner, tmp_path):
    class Boom(Callback):
        order = 90
        def after_epoch(self):
            self.w = {k: v.clone() for k, v in self.learn.model.state_dict().items()}
            if self.learn.epoch == 3: raise RuntimeError('boom')
    learn = _learner(make_learner, [3, 1, 2, 2.5, 2.6, 2.7])
    boom = Boom()
    with pytest.raises(RuntimeError, match='boom'):
        learn.fit(6, 1e-2, cbs=[SaveModel(tmp_path, 'score', mode='min', load_best=True), boom])
    assert _same(boom.w, learn.model)   # resume=True continues from these, not from the best


def test_load_best_inside_an_except_block_still_loads(make_learner, tmp_path):
    learn = _learner(make_learner, [3, 1, 2])
    w = Weights()
    try: raise KeyError('outer')
    except KeyError: learn.fit(3, 1e-2, cbs=[SaveModel(tmp_path, 'score', mode='min', load_best=True), w])
    assert _same(w.seen[1], learn.model)


def test_load_best_needs_save_best():
    with pytest.raises(ValueError, match='load_best=True needs save_best=True'): SaveModel(save_best=False,
                                                                                         load_best=True)
    with pytest.raises(TypeError, match='load_best'): SaveModel(load_best='yes')
