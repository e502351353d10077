"""Reading the loss curves of a fit, as Smith's "disciplined approach" does: train and validation
loss per epoch and the generalization gap between them (valid - train) give a verdict a person
can act on.

- healthy: the validation loss falls fast, then runs flat;
- overfitting: it falls fast, then rises again while the training loss keeps falling (both rising
  is training turning unstable: diverging);
- lr too small: it barely moves, or falls at a pace that does not slow down, or falls slowly and
  then shows the overfitting-like rise that a too small lr causes;
- underfitting: it fell fast at first but is still falling at the end: there is more to learn;
- diverging: the training loss turns NaN/inf (or a DivergenceGuard stopped the fit, whatever the
  number of epochs recorded), or climbs back up from its lowest point.

A healthy verdict with a validation loss several times the training loss says so: the model
fits its training data far better than new data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.checks import check_fraction

__all__ = ['Diagnosis', 'diagnose', 'diagnose_losses', 'VERDICTS']

VERDICTS = ('healthy', 'underfitting', 'overfitting', 'lr too small', 'diverging')

ADVICE = {
    'healthy': 'Nothing to fix: keep these settings (a shorter run may reach the same plateau).',
    'overfitting': 'Regularize more: raise weight decay, use a larger learning rate (it regularizes) or a '
                   'smaller batch, add data augmentation, or stop at the epoch of the lowest validation loss.',
    'lr too small': 'Raise the learning rate: run the LR range test and use its max bound (with 1cycle); '
                    'a larger learning rate also regularizes.',
    'underfitting': 'The model can still learn: train longer or with a larger learning rate, use a bigger '
                    'model, or reduce regularization (weight decay, dropout).',
    'diverging': "Lower the maximum learning rate (a third of the range test's max bound is a safe start), "
                 'warm up longer, or clip gradients.',
}


@dataclass
class Diagnosis:
    """The verdict on a fit's loss curves, the evidence for it in plain words, and what to do.
    ``plot()`` draws the curves and the generalization gap (valid - train)."""
    verdict: str
    evidence: str
    advice: str
    train_losses: list
    valid_losses: list
    epochs: list
    initial_loss: float | None = None

    @property
    def generalization_gap(self) -> list[float]:
        "valid - train per epoch."
        return [v - t for t, v in zip(self.train_losses, self.valid_losses)]

    generalization_error = generalization_gap   # the older name

    def __str__(self):
        return f'{self.verdict}: {self.evidence}\n  -> {self.advice}'

    def plot(self, axs=None):
        "Train and valid loss per epoch beside the generalization gap (valid - train), verdict and evidence below."
        import textwrap

        import matplotlib.pyplot as plt
        fig, axs = plt.subplots(1, 2, figsize=(11, 4.6)) if axs is None else (axs[0].figure, axs)
        ep = self.epochs
        a = axs[0]
        a.plot(ep, self.train_losses, 'o-', ms=3, label='train loss')
        a.plot(ep, self.valid_losses, 'o-', ms=3, label='valid loss')
        finite = [(e, v) for e, v in zip(ep, self.valid_losses) if math.isfinite(v)]
        if finite:
            e_min, v_min = min(finite, key=lambda p: p[1])
            a.plot([e_min], [v_min], '*', color='C3', ms=12, label=f'lowest valid: {v_min:.4g} (epoch {e_min})')
        a.set_xlabel('epoch'); a.set_ylabel('loss'); a.set_title('Losses'); a.legend(fontsize=8)
        b = axs[1]
        b.plot(ep, self.generalization_gap, 'o-', ms=3, color='C2')
        b.axhline(0, color='grey', lw=0.8)
        b.set_xlabel('epoch'); b.set_ylabel('valid loss - train loss')
        b.set_title('Generalization gap (valid - train)')
        from matplotlib.ticker import MaxNLocator
        for x in (a, b): x.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f'Diagnosis: {self.verdict}', fontweight='bold')
        text = textwrap.fill(self.evidence, 150) + '\n' + textwrap.fill('-> ' + self.advice, 150)
        fig.tight_layout(rect=(0, 0.16, 1, 1))
        fig.text(0.01, 0.01, text, fontsize=8, va='bottom', ha='left')
        return fig


def _interp(ts, vs, t):
    "Piecewise-linear value of the curve (ts, vs) at time t."
    for i in range(1, len(ts)):
        if t <= ts[i]:
            w = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
            return vs[i - 1] + w * (vs[i] - vs[i - 1])
    return vs[-1]


def _f(v): return f'{v:.4g}'


def _moved(a, b, what) -> str:
    "`what` went from a to b, with the verb the numbers call for."
    verb = 'rose' if b > a else 'fell' if b < a else 'stayed'
    return f'{what} {verb} from {_f(a)} to {_f(b)}' if verb != 'stayed' else f'{what} stayed at {_f(a)}'


def _wide_gap(T, V, ratio=3.):
    "A word on a validation loss several times the training loss at the end, or ''."
    t, v = T[-1], V[-1]
    if not (t > 0 and v > ratio * t): return ''
    return (f' Note the gap, though: the valid loss ends {v / t:.0f}x the train loss ({_f(v)} against {_f(t)}): '
            'the model fits its training data far better than new data.')


_GAP_ADVICE = (' To lower the valid plateau, close the gap: more data or augmentation, more weight decay '
               'or dropout, or a smaller model.')


def diagnose_losses(train_losses, valid_losses, epochs=None, initial_loss=None, rise_tol=0.1, fall_tol=0.1,
                    fast_share=0.45, move_tol=0.02) -> Diagnosis:
    """The verdict on per-epoch train and valid losses (at least 3 epochs).

    Args:
        epochs: the epoch numbers to quote (0, 1, ... by default).
        initial_loss: the loss before training (the first batch's), the starting point of both
            curves; without it the curves start at their first epoch.
        rise_tol: a rise of the valid loss after its minimum counts when above this fraction of its drop.
        fall_tol: the valid loss is 'still falling' when its last third of epochs brought more than this
            fraction of its drop.
        fast_share: a descent is fast when a third of the time to the minimum brought at least this
            fraction of the drop (a straight line brings a third), or when the minimum came in the
            first third of the epochs.
        move_tol: a train loss that fell by less than this fraction of its start 'barely moved'.
    """
    T, V = [float(v) for v in train_losses], [float(v) for v in valid_losses]
    n = len(T)
    if len(V) != n: raise ValueError(f'train_losses and valid_losses differ in length ({n} and {len(V)})')
    ep = list(range(n)) if epochs is None else list(epochs)
    if len(ep) != n: raise ValueError(f'epochs has {len(ep)} entries for {n} epochs of losses')
    if n < 3 and all(math.isfinite(v) for v in T + V):   # a loss that is no longer a number needs no trend
        raise ValueError(f'need the losses of at least 3 epochs to read a trend, got {n}')
    for name, v in (('rise_tol', rise_tol), ('fall_tol', fall_tol), ('fast_share', fast_share), ('move_tol', move_tol)):
        check_fraction(name, v)
    if initial_loss is not None and not math.isfinite(initial_loss): initial_loss = None

    def verdict(v, evidence):
        return Diagnosis(v, evidence, ADVICE[v], T, V, ep, initial_loss)

    # 1. diverging: a loss that is no longer a number, or a train loss climbing back up
    for name, L in (('train', T), ('valid', V)):
        bad = next((i for i, v in enumerate(L) if not math.isfinite(v)), None)
        if bad is not None:
            return verdict('diverging', f'the {name} loss became {L[bad]} at epoch {ep[bad]}'
                           + (f' (it was {_f(L[bad - 1])} at epoch {ep[bad - 1]}).' if bad else '.'))
    t_top = max(range(n), key=T.__getitem__)
    if initial_loss is not None and T[t_top] - initial_loss > 0.5 * abs(initial_loss):
        return verdict('diverging', f'the train loss rose far above where it started: {_f(T[t_top])} at epoch '
                       f'{ep[t_top]} against {_f(initial_loss)} before training.')
    t_min = min(range(n), key=T.__getitem__)
    t_start = T[0] if initial_loss is None else max(T[0], initial_loss)
    t_drop = t_start - T[t_min]
    if t_min < n - 1 and T[-1] - T[t_min] > 0.5 * max(t_drop, 0.) and T[-1] - T[t_min] > 0.1 * abs(T[t_min]):
        return verdict('diverging', f'the train loss climbed back up from its lowest, {_f(T[t_min])} at epoch '
                       f'{ep[t_min]}, to {_f(T[-1])} at epoch {ep[-1]}: more than half of what training had gained '
                       f'(it started at {_f(t_start)}) is lost.')

    # 2. barely moved
    if t_drop < move_tol * abs(t_start):
        return verdict('lr too small', f'the train loss barely moved: from {_f(t_start)} to at best {_f(T[t_min])} '
                       f'(epoch {ep[t_min]}), {100 * t_drop / abs(t_start) if t_start else 0:.1f}% in {n} epochs; '
                       f'the valid loss went from {_f(V[0])} to {_f(V[-1])}.')

    # shape of the valid curve: its drop, how fast it came, what happened after its minimum
    ts = ([-1.] if initial_loss is not None else []) + [float(i) for i in range(n)]
    vs = ([initial_loss] if initial_loss is not None else []) + V
    m = min(range(n), key=V.__getitem__)
    drop = vs[0] - V[m]
    k = max(1, n // 10)   # average the last k epochs (and k around the tail's start) against noise
    v_end = sum(V[-k:]) / k
    G = [v - t for t, v in zip(T, V)]
    t_third = ts[0] + (m - ts[0]) / 3
    share = (vs[0] - _interp(ts, vs, t_third)) / drop if drop > 0 else 0.
    # fast: a third of the way to the minimum brought most of the drop, or the minimum came early
    fast = share >= fast_share or m + 1 <= n / 3
    pace = (f'{100 * share:.0f}% of its drop came in the first third of the time to its lowest point' if m > 0
            else 'it was lowest at the first epoch')
    rise = v_end - V[m]

    # 3. a rise after the minimum: overfitting, or the overfitting-like rise of a too small lr
    if m < n - 1 and rise > rise_tol * max(drop, 0.) and rise > 0.01 * abs(V[m]):
        t_rise = T[-1] - T[m]
        if t_rise > rise_tol * max(t_drop, 0.) and t_rise > 0.05 * abs(T[m]):   # both rose: not overfitting
            return verdict('diverging', f'both losses climbed back up after epoch {ep[m]}: the valid loss from '
                           f'{_f(V[m])} to {_f(V[-1])} and the train loss from {_f(T[m])} to {_f(T[-1])} by epoch '
                           f'{ep[-1]}: training turned unstable (overfitting would lower the train loss).')
        train = ('kept falling' if t_rise < -0.05 * abs(T[m]) else 'held about level') + f' ({_f(T[m])} -> {_f(T[-1])})'
        story = (f'reached its lowest, {_f(V[m])}, at epoch {ep[m]}, then rose to {_f(V[-1])} by epoch {ep[-1]} while '
                 f'the train loss {train}; {_moved(G[m], G[-1], "the generalization gap (valid - train)")}.')
        if fast: return verdict('overfitting', f'the valid loss fell fast ({pace}), {story}')
        return verdict('lr too small', f'the valid loss fell slowly ({pace}), {story} This overfitting-like rise '
                       'after a slow descent is the sign of a too small learning rate.')

    # 4. still falling at the end: underfitting if it is slowing down, a too small lr if it is not
    L = max(1, n // 3)
    j = n - 1 - L
    seg = V[max(0, j - k // 2):j - k // 2 + k]
    v_tail = sum(seg) / len(seg)
    tail = v_tail - v_end
    if drop > 0 and tail > fall_tol * drop:
        story = (f'the valid loss is still falling: {_f(V[j])} at epoch {ep[j]} to {_f(V[-1])} at epoch {ep[-1]}, '
                 f'{100 * tail / drop:.0f}% of its whole drop in the last {L} epoch(s)')
        gap = _moved(G[0], G[-1], 'the generalization gap (valid - train)')
        if not fast:
            return verdict('lr too small', f'{story}, and it is not slowing down ({pace}): the learning rate sets '
                           f'the pace; {gap}.')
        return verdict('underfitting', f'{story}, though it fell fast at first ({pace}); {gap} with the train loss '
                       f'at {_f(T[-1])}: there is more to learn.')

    # 5. flat at the end
    flat = f'over the last {L} epoch(s) it changed by only {abs(tail):.2g} (from {_f(V[j])} to {_f(V[-1])})'
    if fast:
        d = verdict('healthy', f'the valid loss fell fast ({pace}: {_f(vs[0])} -> {_f(V[m])} by epoch {ep[m]}) '
                    f'and then ran flat: {flat}; the generalization gap (valid - train) ends at {_f(G[-1])}.'
                    + _wide_gap(T, V))
        if _wide_gap(T, V): d.advice += _GAP_ADVICE
        return d
    return verdict('lr too small', f'the valid loss fell slowly ({pace}) before flattening ({flat}): '
                   'a larger learning rate would get there sooner, and lower.')


def diagnose(source, **kwargs) -> Diagnosis:
    """The verdict on a fit's loss curves. `source` is a Learner, its Recorder, or a Recorder's
    ``epochs`` list (dicts with 'train_loss' and 'valid_loss'); keyword arguments go to
    :func:`diagnose_losses`. The loss of the first training batch, when recorded, is the starting point."""
    rec = getattr(source, 'recorder', source)
    rows = getattr(rec, 'epochs', rec)
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f'source must be a Learner, a Recorder or a list of epoch dicts, got {type(source).__name__}')
    stopped = _stopped(source, rec, rows)
    if stopped is not None: return stopped
    if not rows: raise ValueError('nothing to diagnose: no epoch has been recorded (has a fit run?)')
    missing = [k for k in ('train_loss', 'valid_loss') if k not in rows[0]]
    if missing:
        raise ValueError(f'diagnose needs train and valid loss per epoch; the records lack {missing} '
                         '(is there a validation set, dls.valid?)')
    if 'initial_loss' not in kwargs:
        losses = getattr(rec, 'losses', None)
        if losses: kwargs['initial_loss'] = losses[0]
    return diagnose_losses([r['train_loss'] for r in rows], [r['valid_loss'] for r in rows],
                           epochs=[r.get('epoch', i) for i, r in enumerate(rows)], **kwargs)


def _stopped(source, rec, rows):
    """'diverging' when the last fit ended on a divergence before its curves could say so: a
    DivergenceGuard stopped it (the non-finite loss never reached the records), or a batch loss
    turned non-finite in an epoch that has no row; None otherwise."""
    T = [r.get('train_loss', math.nan) for r in rows]
    V = [r.get('valid_loss', math.nan) for r in rows]
    ep = [r.get('epoch', i) for i, r in enumerate(rows)]
    losses = getattr(rec, 'losses', None) or []
    start = f' (the first batch\'s loss was {_f(losses[0])})' if losses and math.isfinite(losses[0]) else ''
    guard = getattr(source, 'divergence_guard', None)
    at = getattr(guard, 'stopped', None)
    if at is not None:
        lrs = ', '.join(f'{l:.3g}' for l in at['lr'])
        evidence = (f'the DivergenceGuard stopped the fit: the {at["what"]} became non-finite (loss {at["loss"]}) at '
                    f'epoch {at["epoch"]}, batch {at["batch"]} (optimizer step {at["step"]}) with lr {lrs}{start}.')
    else:
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is None or (rows and len(rows) >= 3): return None   # the curves speak for themselves
        evidence = (f'the training loss became {losses[bad]} at batch {bad} of the fit, after {len(rows)} complete '
                    f'epoch(s){start}.')
    return Diagnosis('diverging', evidence, ADVICE['diverging'], T, V, ep, losses[0] if losses else None)
