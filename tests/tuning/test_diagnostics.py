"""Loss-curve diagnostics: the verdict on constructed curves whose answer is known, the evidence in
words, and the same from a real fit through learn.diagnose()."""
import math

import pytest

from onecycle import Diagnosis, diagnose, diagnose_losses
from onecycle.tuning.diagnostics import ADVICE, VERDICTS

N = 20
exp = math.exp


def healthy():       # falls fast, then flat
    return [0.40 + 1.9 * exp(-t / 1.5) for t in range(N)], [0.50 + 1.8 * exp(-t / 1.5) for t in range(N)]


def overfitting():   # falls fast, lowest at epoch 6, then rises while the train loss keeps falling
    return ([0.40 + 1.9 * exp(-t / 1.5) - 0.01 * t for t in range(N)],
            [0.50 + 1.8 * exp(-t / 1.5) + 0.03 * max(0, t - 5) for t in range(N)])


def underfitting():  # fast at first, but still clearly falling at the end; train and valid close
    return [2.28 - 1.25 * (1 - exp(-t / 8)) for t in range(N)], [2.30 - 1.2 * (1 - exp(-t / 8)) for t in range(N)]


def slow_then_rising():   # a straight, slow descent to epoch 12, then the overfitting-like rise
    return [2.3 - 0.08 * t for t in range(N)], [2.3 - 0.05 * t if t < 12 else 1.7 + 0.02 * (t - 12) for t in range(N)]


def steady_fall():        # a straight line that is not slowing down, the gap opening
    return [2.3 - 0.08 * t for t in range(N)], [2.3 - 0.05 * t for t in range(N)]


def barely_moving():
    return [2.302 - 0.0005 * t for t in range(N)], [2.303 - 0.0004 * t for t in range(N)]


def nan_loss():
    return [2.0, 1.2, 0.9, 1.5, 3.0, float('nan')], [2.0, 1.3, 1.0, 1.6, 3.2, float('nan')]


def climbing_back():
    return [2.0, 1.2, 0.9, 0.8, 1.6, 2.5], [2.0, 1.3, 1.0, 0.9, 1.7, 2.6]


@pytest.mark.parametrize('curves,verdict', [
    (healthy, 'healthy'), (overfitting, 'overfitting'), (underfitting, 'underfitting'),
    (slow_then_rising, 'lr too small'), (steady_fall, 'lr too small'), (barely_moving, 'lr too small'),
    (nan_loss, 'diverging'), (climbing_back, 'diverging'),
])
@pytest.mark.parametrize('initial_loss', [None, 2.31])
def test_verdicts_on_constructed_curves(curves, verdict, initial_loss):
    train, valid = curves()
    d = diagnose_losses(train, valid, initial_loss=initial_loss)
    assert isinstance(d, Diagnosis) and d.verdict == verdict, d.evidence
    assert d.verdict in VERDICTS and d.advice == ADVICE[verdict] and str(d).startswith(verdict)
    assert d.generalization_error == pytest.approx([v - t for t, v in zip(train, valid)], nan_ok=True)


def test_evidence_names_epochs_and_values():
    d = diagnose_losses(*overfitting())
    assert 'lowest, 0.563, at epoch 6' in d.evidence            # where the valid loss bottomed
    assert 'rose to 0.92 by epoch 19' in d.evidence and 'generalization gap (valid - train) rose from' in d.evidence
    assert 'train loss kept falling (0.3748 -> 0.21)' in d.evidence
    d = diagnose_losses(*nan_loss(), epochs=range(10, 16))      # epochs quoted as the recorder numbers them
    assert d.evidence == 'the train loss became nan at epoch 15 (it was 3 at epoch 14).'
    d = diagnose_losses(*climbing_back())
    assert 'lowest, 0.8 at epoch 3, to 2.5 at epoch 5' in d.evidence


def test_a_train_loss_far_above_the_initial_loss_is_divergence():
    # blew up in the first epoch, then stuck at chance: only the loss before training shows it
    train, valid = [12.5, 2.315, 2.317, 2.32, 2.315, 2.318], [2.316, 2.307, 2.312, 2.325, 2.307, 2.312]
    assert diagnose_losses(train, valid, initial_loss=2.31).verdict == 'diverging'
    assert diagnose_losses(train, valid).verdict != 'diverging'


def test_noise_on_a_plateau_is_not_overfitting():
    train, valid = healthy()
    wobble = [v + (0.004 if t % 2 else -0.004) * (t > 8) for t, v in enumerate(valid)]
    assert diagnose_losses(train, wobble).verdict == 'healthy'


def test_a_slow_descent_that_flattened_is_a_small_lr():
    t_, v_ = [2.3 - 0.1 * min(t, 12) for t in range(N)], [2.3 - 0.08 * min(t, 12) for t in range(N)]
    d = diagnose_losses(t_, v_)
    assert d.verdict == 'lr too small' and 'slowly' in d.evidence


@pytest.mark.parametrize('train,valid,kw,exc,word', [
    ([1., 0.9], [1., 0.9], {}, ValueError, 'at least 3 epochs'),
    ([1., 0.9, 0.8], [1., 0.9], {}, ValueError, 'differ in length'),
    ([1., 0.9, 0.8], [1., 0.9, 0.8], dict(epochs=[0, 1]), ValueError, 'epochs'),
    ([1., 0.9, 0.8], [1., 0.9, 0.8], dict(rise_tol=2.), ValueError, 'rise_tol'),
])
def test_bad_input_is_a_clear_error(train, valid, kw, exc, word):
    with pytest.raises(exc, match=word): diagnose_losses(train, valid, **kw)


def test_diagnose_after_a_fit(make_learner):
    learn = make_learner(dls_kw=dict(n_train=128, bs=16))
    learn.fit_one_cycle(6, 0.1)
    d = learn.diagnose()
    rows = learn.recorder.epochs
    assert d.train_losses == [r['train_loss'] for r in rows] and d.valid_losses == [r['valid_loss'] for r in rows]
    assert d.epochs == list(range(6)) and d.initial_loss == learn.recorder.losses[0]
    assert d.verdict in VERDICTS and d.evidence
    assert diagnose(learn.recorder).verdict == d.verdict == diagnose(rows, initial_loss=d.initial_loss).verdict
    fig = d.plot()
    losses_ax, gap_ax = fig.axes
    assert list(gap_ax.get_lines()[0].get_ydata()) == pytest.approx(d.generalization_error)
    assert d.verdict in fig.texts[0].get_text() or d.verdict in fig._suptitle.get_text()
    fig.savefig('/tmp/test_diagnostics.png', dpi=60)


def test_diagnose_needs_a_validation_loss_and_a_fit(make_learner, make_dls):
    learn = make_learner()
    with pytest.raises(ValueError, match='no epoch'): learn.diagnose()
    learn = make_learner(dls=make_dls(valid=False))
    learn.fit(3, lr=0.1)
    with pytest.raises(ValueError, match='valid_loss'): learn.diagnose()
    with pytest.raises(TypeError, match='Recorder'): diagnose(42)


# --- each verdict says what its numbers say ------------------------------------------------------------
def both_rising():   # the fit of issue 12: fell fast, then train and valid both climbed (0.18 -> 0.40)
    t = [2.3, 0.6, 0.3, 0.2, 0.18, 0.19, 0.22, 0.27, 0.33, 0.40]
    return t, [v - 0.025 for v in t]     # valid a hair below train (dropout-like): a negative gap


def test_both_losses_rising_is_not_overfitting():
    d = diagnose_losses(*both_rising())
    assert d.verdict == 'diverging', d.evidence
    assert 'train loss from 0.18 to 0.4' in d.evidence and 'kept falling' not in d.evidence
    assert 'grew' not in d.evidence


def test_overfitting_with_a_level_train_loss_says_so():
    train = [2.3, 0.9, 0.5, 0.4, 0.39, 0.39, 0.39, 0.39, 0.39, 0.39]
    valid = [2.3, 0.9, 0.55, 0.5, 0.52, 0.56, 0.6, 0.65, 0.7, 0.75]
    d = diagnose_losses(train, valid)
    assert d.verdict == 'overfitting' and 'held about level (0.4 -> 0.39)' in d.evidence, d.evidence
    assert 'gap (valid - train) rose from 0.1 to 0.36' in d.evidence


@pytest.mark.parametrize('a,b,word', [(-0.02452, -0.02605, 'fell'), (0.1, 0.3, 'rose'), (0.2, 0.2, 'stayed')])
def test_gap_verbs_follow_the_numbers(a, b, word):
    from onecycle.tuning.diagnostics import _moved
    assert _moved(a, b, 'the gap').startswith(f'the gap {word}')


def test_healthy_with_a_wide_gap_says_a_word_about_it():
    train = [0.02 + 1.9 * exp(-t / 1.5) for t in range(N)]
    valid = [0.26 + 1.8 * exp(-t / 1.5) for t in range(N)]   # flat at 13x the train loss
    d = diagnose_losses(train, valid)
    assert d.verdict == 'healthy', d.evidence
    assert 'valid loss ends 13x the train loss' in d.evidence and 'close the gap' in d.advice
    assert 'Note the gap' not in diagnose_losses(*healthy()).evidence


@pytest.mark.parametrize('n_epochs', [1, 2])
def test_a_nan_in_the_first_epochs_is_diverging_not_too_few_epochs(n_epochs):
    train, valid = [2.3, float('nan')][:n_epochs], [2.2, float('nan')][:n_epochs]
    if n_epochs == 1: train, valid = [float('nan')], [float('nan')]
    assert diagnose_losses(train, valid).verdict == 'diverging'


def _diverging_learner(make_learner, guard):
    from torch import nn

    class Explode(nn.Module):   # fine for 2 batches, then the output turns inf
        def __init__(self):
            super().__init__(); self.lin, self.n = nn.Linear(8, 2), 0
        def forward(self, x):
            self.n += 1
            return self.lin(x) * (float('inf') if self.n > 2 else 1.)
    return make_learner(model=Explode(), guard=guard)


def test_a_divergence_stopped_in_the_first_epoch_is_diagnosed(make_learner):
    from onecycle import DivergenceError
    learn = _diverging_learner(make_learner, True)
    with pytest.raises(DivergenceError): learn.fit(4, lr=0.1)
    assert learn.recorder.epochs == []
    d = learn.diagnose()
    assert d.verdict == 'diverging' and 'DivergenceGuard stopped the fit' in d.evidence
    assert 'epoch 0, batch 2 (optimizer step 2)' in d.evidence, d.evidence
    d.plot()
    learn.model.n = -10 ** 9                                                   # healthy again: a new fit clears it
    learn.fit(3, lr=0.1)
    assert learn.diagnose().verdict != 'diverging'


def test_a_nan_loss_without_a_guard_is_diagnosed(make_learner):
    learn = _diverging_learner(make_learner, False)
    learn.fit(1, lr=0.1)
    d = learn.diagnose()
    assert d.verdict == 'diverging' and ('became nan' in d.evidence or 'became inf' in d.evidence), d.evidence
