"""Does the one-liner hold on regressions? Twenty-eight small regression problems (mean squared error; one with a
Huber loss), none in the other benches, whose rules were all read on classifiers: MLPs on scikit-learn's generated
and bundled tables, a tanh MLP, a BatchNorm MLP, a pre-norm residual MLP, 1-D CNNs on noisy sinusoids, a GRU and an
LSTM on token sequences; SGD(momentum=0.9) and AdamW. Targets are standardized (minus the training mean, over its
standard deviation), as lr_find's warning asks.

For each problem and seed: the default range test with the fit's length (``lr_find(n_epoch=n)``, its 'fit'
suggestion S), then full 1cycle fits at S * (1/2, 1, 2, 4) with fit_one_cycle's weight decay, test mean squared
error (on the standardized targets; a fit that diverged scores 1e9). Under SGD it also runs, in the same process,
the rules the range test applies to a classifier (the same loss wrapped in a lambda, which
``core.hyper.is_regression_loss`` does not recognize) and fits at their suggestion: the baseline that the
regression's own rule is measured against (``suggest.exposure_exponent``).

It prints each problem's one-liner mean against the best rung's mean (a ratio: 1.00 is the best rung), its worst
seed against that seed's best rung, and under SGD the classifier rules' ratio. The team's targets for a
regression (issue 10's are in accuracy points): a mean within 1.25x of the best rung's, no seed above 2x its own.
With --tune it also runs tune as bench/recommend.py does (on the first 90% of the training split, scored on the
rest), fits with its findings and judges that fit against the same rungs and targets (its weight decay is its own,
so it can sit below 1.00x).

    OMP_NUM_THREADS=1 .venv/bin/python bench/suggest_regression.py                       # every problem, 3 seeds
    OMP_NUM_THREADS=1 .venv/bin/python bench/suggest_regression.py --problems sine-mlp-sgd --seeds 1
    OMP_NUM_THREADS=1 .venv/bin/python bench/suggest_regression.py --tune    # tune too, against the same rungs

The first twelve SGD problems were run before the rule was chosen (the pattern was read on them); the next five
(friedman2-mlp-sgd ... amp-cnn-sgd) were made after the pattern was seen and before the rule was chosen among
two; the Adam-like ones are controls (the rule does not touch them).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_here = Path(__file__).resolve().parent
sys.path.insert(0, str(_here.parent))   # the repo first: runs from a checkout without installing
# the BatchNorm MLP of bench/suggest_unseen.py (norm_mlp)
_spec = importlib.util.spec_from_file_location('suggest_unseen', _here / 'suggest_unseen.py')
unseen = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(unseen)
from onecycle import DivergenceError, Learner, fit_one_cycle, get_preds, tune  # noqa: E402
from onecycle.data import tensor_dls  # noqa: E402
from onecycle.models import ResMLP, mlp  # noqa: E402

RATIOS = (0.5, 1., 2., 4.)
DIVERGED = 1e9
MEAN_RATIO, WORST_RATIO = 1.25, 2.


def split(x, y, n_test, scale_x=True):
    """(x_train, y_train, x_test, y_test) as float tensors, the first `n_test` rows for the test; inputs
    standardized on the training rows unless `scale_x` is False, targets always (a column per output)."""
    x, y = torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.float32)
    if y.ndim == 1: y = y[:, None]
    xtr, ytr, xte, yte = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    if scale_x:
        m, s = xtr.mean(0), xtr.std(0) + 1e-8
        xtr, xte = (xtr - m) / s, (xte - m) / s
    m, s = ytr.mean(0), ytr.std(0)
    return xtr, (ytr - m) / s, xte, (yte - m) / s


def friedman(number=1, n=6000, n_test=2000, seed=3):
    "scikit-learn's make_friedman1/2/3 (10, 4 and 4 features)."
    from sklearn import datasets
    make = {1: partial(datasets.make_friedman1, n_features=10, noise=1.),
            2: partial(datasets.make_friedman2, noise=10.), 3: partial(datasets.make_friedman3, noise=0.05)}[number]
    x, y = make(n_samples=n, random_state=seed)
    return split(x, y, n_test)


def diabetes():
    "scikit-learn's bundled diabetes table (442 rows, 10 features): a test of 100."
    from sklearn.datasets import load_diabetes
    x, y = load_diabetes(return_X_y=True)
    return split(x, y, 100)


def linear(n=6000, n_test=2000, seed=4):
    "make_regression: 30 features, 10 informative, a linear target with noise."
    from sklearn.datasets import make_regression
    x, y = make_regression(n_samples=n, n_features=30, n_informative=10, noise=10., random_state=seed)
    return split(x, y, n_test)


def sparse(n=6000, n_test=2000, seed=12):
    "make_sparse_uncorrelated: 12 features, 4 of them informative."
    from sklearn.datasets import make_sparse_uncorrelated
    x, y = make_sparse_uncorrelated(n_samples=n, n_features=12, random_state=seed)
    return split(x, y, n_test)


def multi_output(n=6000, n_test=2000, seed=9):
    "Three targets of make_regression bent by a tanh and a square."
    from sklearn.datasets import make_regression
    x, y = make_regression(n_samples=n, n_features=20, n_informative=8, n_targets=3, noise=5., random_state=seed)
    return split(x, np.tanh(y / 100.) * 100. + 0.01 * y ** 2, n_test, scale_x=False)


def sine(n=6000, n_test=2000, seed=5):
    "y = sin(3x) + noise on x in [-3, 3]: one input, many wiggles."
    g = np.random.default_rng(seed)
    x = g.uniform(-3, 3, (n, 1))
    return split(x, np.sin(3 * x[:, 0]) + 0.1 * g.standard_normal(n), n_test, scale_x=False)


def teacher(n=6000, n_test=2000, seed=6):
    "A random tanh network of 20 Gaussian inputs, with noise: a regression teacher."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    w1, w2 = torch.randn(20, 32, generator=g) / 20 ** .5, torch.randn(32, generator=g)
    return split(x, torch.tanh(2 * x @ w1) @ w2 + 0.3 * torch.randn(n, generator=g), n_test)


def digit_values():
    "scikit-learn's 8x8 digits, the digit's value (0-9) as a number."
    from sklearn.datasets import load_digits
    d = load_digits()
    return split(d.data / 16., d.target.astype(float), 500, scale_x=False)


def sinusoids(target='frequency', n=6000, n_test=2000, length=64):
    "Noisy sinusoids of 64 samples: regress the frequency (random phase), or amplitude x frequency."
    g = np.random.default_rng(7 if target == 'frequency' else 13)
    t = np.linspace(0, 1, length)
    if target == 'frequency':
        f, ph = g.uniform(1, 6, n), g.uniform(0, 2 * np.pi, n)
        x, y = np.sin(2 * np.pi * f[:, None] * t + ph[:, None]), f
    else:
        a, f = g.uniform(0.5, 2, n), g.uniform(1, 4, n)
        x, y = a[:, None] * np.sin(2 * np.pi * f[:, None] * t), a * f
    return split(x + 0.3 * g.standard_normal((n, length)), y, n_test, scale_x=False)


def tokens(target='sum', n=6000, n_test=2000, vocab=10):
    "Sequences of digit tokens: regress their sum (16 tokens, with noise) or max + count of 3s (12 tokens)."
    g = torch.Generator().manual_seed(8 if target == 'sum' else 14)
    x = torch.randint(0, vocab, (n, 16 if target == 'sum' else 12), generator=g)
    y = x.float().sum(1) + 0.5 * torch.randn(n, generator=g) if target == 'sum' else \
        x.float().max(1).values + (x == 3).float().sum(1)
    ytr = y[n_test:]
    y = (y - ytr.mean()) / ytr.std()
    return x[n_test:], y[n_test:, None], x[:n_test], y[:n_test, None]


class SignalCNN(nn.Module):
    "Three 1-D convolutions (32 channels, two strided) and a linear head: a number from a 64-sample signal."
    def __init__(self, length=64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(),
                                 nn.Conv1d(32, 32, 5, padding=2, stride=2), nn.ReLU(),
                                 nn.Conv1d(32, 32, 5, padding=2, stride=2), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(32 * length // 4, 1))

    def forward(self, x): return self.net(x[:, None])


class TokenRNN(nn.Module):
    "Token embeddings, a GRU or an LSTM, a linear head on its last state."
    def __init__(self, cell=nn.GRU, vocab=10, width=32, hidden=64):
        super().__init__()
        self.embed, self.rnn, self.head = nn.Embedding(vocab, width), cell(width, hidden, batch_first=True), \
            nn.Linear(hidden, 1)

    def forward(self, x): return self.head(self.rnn(self.embed(x))[0][:, -1])


P = dict
PROBLEMS = {
    # SGD, read before the rule was chosen
    'friedman-mlp-sgd': P(data=friedman, model=lambda: mlp((10, 128, 128, 1)), opt='sgd', bs=64, epochs=10),
    'friedman3-mlp-sgd': P(data=partial(friedman, 3), model=lambda: mlp((4, 128, 128, 1)), opt='sgd', bs=64, epochs=10),
    'linear-mlp-sgd': P(data=linear, model=lambda: mlp((30, 128, 1)), opt='sgd', bs=64, epochs=8),
    'sine-mlp-sgd': P(data=sine, model=lambda: mlp((1, 128, 128, 128, 1)), opt='sgd', bs=64, epochs=20),
    'teacher-mlp-sgd': P(data=teacher, model=lambda: mlp((20, 256, 256, 1)), opt='sgd', bs=100, epochs=15),
    'teacher-bnmlp-sgd': P(data=teacher, model=lambda: unseen.norm_mlp((20, 256, 256, 1)), opt='sgd', bs=100,
                           epochs=15),
    'digitvalue-mlp-sgd': P(data=digit_values, model=lambda: mlp((64, 128, 64, 1)), opt='sgd', bs=32, epochs=12),
    'diabetes-mlp-sgd': P(data=diabetes, model=lambda: mlp((10, 64, 64, 1)), opt='sgd', bs=32, epochs=40),
    'tokensum-gru-sgd': P(data=tokens, model=TokenRNN, opt='sgd', bs=64, epochs=10),
    'multi-mlp-sgd': P(data=multi_output, model=lambda: mlp((20, 128, 128, 3)), opt='sgd', bs=64, epochs=10),
    'frequency-cnn-sgd': P(data=sinusoids, model=SignalCNN, opt='sgd', bs=64, epochs=10),
    'friedman-mlp-sgd-huber': P(data=friedman, model=lambda: mlp((10, 128, 128, 1)), opt='sgd', bs=64, epochs=10,
                                loss=F.smooth_l1_loss),
    # SGD, made after the pattern was seen, before the rule was chosen
    'friedman2-mlp-sgd': P(data=partial(friedman, 2, seed=11), model=lambda: mlp((4, 128, 128, 1)), opt='sgd', bs=64,
                           epochs=10),
    'sparse-mlp-sgd-bs32': P(data=sparse, model=lambda: mlp((12, 64, 64, 1)), opt='sgd', bs=32, epochs=8),
    'teacher-tanh-mlp-sgd': P(data=teacher, model=lambda: mlp((20, 128, 128, 128, 1), act=nn.Tanh), opt='sgd', bs=32,
                              epochs=6),
    'tokenmax-lstm-sgd': P(data=partial(tokens, 'max'), model=partial(TokenRNN, nn.LSTM), opt='sgd', bs=64, epochs=10),
    'amplitude-cnn-sgd': P(data=partial(sinusoids, 'amplitude'), model=SignalCNN, opt='sgd', bs=64, epochs=10),
    # AdamW: controls
    'friedman-mlp-adamw': P(data=friedman, model=lambda: mlp((10, 128, 128, 1)), opt='adamw', bs=64, epochs=10),
    'friedman3-mlp-adamw': P(data=partial(friedman, 3), model=lambda: mlp((4, 128, 128, 1)), opt='adamw', bs=64,
                             epochs=10),
    'sine-mlp-adamw': P(data=sine, model=lambda: mlp((1, 128, 128, 128, 1)), opt='adamw', bs=64, epochs=20),
    'teacher-mlp-adamw': P(data=teacher, model=lambda: mlp((20, 256, 256, 1)), opt='adamw', bs=100, epochs=15),
    'teacher-resmlp-adamw': P(data=teacher, model=lambda: ResMLP(n_in=20, n_out=1), opt='adamw', bs=100, epochs=15),
    'diabetes-mlp-adamw': P(data=diabetes, model=lambda: mlp((10, 64, 64, 1)), opt='adamw', bs=32, epochs=40),
    'frequency-cnn-adamw': P(data=sinusoids, model=SignalCNN, opt='adamw', bs=64, epochs=10),
    'tokensum-gru-adamw': P(data=tokens, model=TokenRNN, opt='adamw', bs=64, epochs=10),
    'multi-mlp-adamw': P(data=multi_output, model=lambda: mlp((20, 128, 128, 3)), opt='adamw', bs=64, epochs=10),
    'friedman-resmlp-adamw': P(data=friedman, model=lambda: ResMLP(n_in=10, n_out=1), opt='adamw', bs=64, epochs=10),
    'digitvalue-mlp-adamw': P(data=digit_values, model=lambda: mlp((64, 128, 64, 1)), opt='adamw', bs=32, epochs=12),
}
OPTIMIZERS = {'sgd': partial(torch.optim.SGD, momentum=0.9), 'adamw': torch.optim.AdamW}


def learner(model, arrays, p, seed, classifier_rules=False):
    """A Learner on the problem's split; with `classifier_rules` its loss is wrapped in a lambda, which the range
    test does not read as a regression's."""
    x, y, xt, yt = arrays
    loss = p.get('loss', F.mse_loss)
    if classifier_rules: loss = (lambda f: lambda pred, targ: f(pred, targ))(loss)
    return Learner(model, tensor_dls(x, y, xt, yt, bs=p['bs'], seed=seed), loss, opt_func=OPTIMIZERS[p['opt']],
                   progress=False, device='cpu')


def test_mse(learn, n_epoch, lr, **fit_kwargs) -> float:
    "A 1cycle fit at max_lr `lr`, then the mean squared error on the test split (DIVERGED where it blew up)."
    try: fit_one_cycle(learn, n_epoch, lr, **fit_kwargs)
    except DivergenceError: return DIVERGED
    preds, targets = get_preds(learn)
    mse = float(F.mse_loss(preds.float(), targets.float()))
    return mse if math.isfinite(mse) else DIVERGED


def run(name, arrays, seed, ratios=RATIOS, with_tune=False) -> dict:
    """The one-liner's ladder for one seed (and under SGD the classifier rules' fit); `with_tune`: tune too, as
    bench/recommend.py runs it (tuned on the first 90% of the training split, scored on the last 10%), then its fit
    on the whole training split."""
    p = PROBLEMS[name]
    torch.manual_seed(seed)
    init = p['model']().state_dict()
    def fresh():
        m = p['model'](); m.load_state_dict(init); return m
    res = learner(fresh(), arrays, p, seed).lr_find(n_epoch=p['epochs'])
    s = res.suggestion
    row = {'suggestion': s, 'mse': {f'{r:g}': test_mse(learner(fresh(), arrays, p, seed), p['epochs'], s * r)
                                    for r in ratios}, 'held': bool(res.held)}
    if p['opt'] == 'sgd':   # the baseline: what the range test suggests for a classifier
        base = learner(fresh(), arrays, p, seed, classifier_rules=True).lr_find(n_epoch=p['epochs']).suggestion
        row['classifier_rules'] = {'suggestion': base,
                                   'mse': test_mse(learner(fresh(), arrays, p, seed), p['epochs'], base)}
    if with_tune:
        found = tune(learner(fresh(), unseen.recommend.tuning_split(arrays), p, seed), n_epoch=p['epochs'])
        kw = dict(found.fit_kwargs)
        row['tune'] = {'kwargs': unseen.recommend.json_kwargs(kw), 'steps': found.steps,
                       'mse': test_mse(learner(fresh(), arrays, p, seed), p['epochs'], kw.pop('max_lr'), **kw)}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--problems', nargs='+', default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--out', default=None, help='write every result (JSON) here')
    ap.add_argument('--tune', action='store_true', help="tune too (bench/recommend.py's way), against the same rungs")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0, results, met, tune_met = time.perf_counter(), {}, [], []
    for name in a.problems:
        arrays = PROBLEMS[name]['data']()
        rows = []
        for seed in range(a.seeds):
            ts = time.perf_counter()
            row = run(name, arrays, seed, with_tune=a.tune)
            rows.append(row)
            base, tuned = row.get('classifier_rules'), row.get('tune')
            print(f'{name} seed {seed} ({time.perf_counter() - ts:.0f}s): S={row["suggestion"]:.3g} '
                  + ' '.join(f'S*{k}: {v:.4g}' for k, v in row['mse'].items())
                  + (f' | classifier rules S={base["suggestion"]:.3g}: {base["mse"]:.4g}' if base else '')
                  + (f' | tune {tuned["kwargs"]}: {tuned["mse"]:.4g} ({tuned["steps"]} steps)' if tuned else ''),
                  flush=True)
        results[name] = rows
        best_mean = min(statistics.mean(r['mse'][k] for r in rows) for k in rows[0]['mse'])
        mean = statistics.mean(r['mse']['1'] for r in rows) / best_mean
        worst = max(r['mse']['1'] / min(r['mse'].values()) for r in rows)
        ok = mean <= MEAN_RATIO and worst <= WORST_RATIO
        met.append(ok)
        line = f'  {name}: one-liner {mean:.2f}x the best rung, worst seed {worst:.2f}x its own'
        if rows[0].get('classifier_rules'):
            line += f'; classifier rules {statistics.mean(r["classifier_rules"]["mse"] for r in rows) / best_mean:.2f}x'
        print(line + (' -> MET' if ok else ' -> MISSED'), flush=True)
        if a.tune:   # against the same rungs; tune may pick a weight decay of its own, so it can go below 1.00x
            t_mean = statistics.mean(r['tune']['mse'] for r in rows) / best_mean
            t_worst = max(r['tune']['mse'] / min(r['mse'].values()) for r in rows)
            tune_met.append(t_mean <= MEAN_RATIO and t_worst <= WORST_RATIO)
            print(f'  {name}: tune {t_mean:.2f}x the best rung, worst seed {t_worst:.2f}x its own'
                  + (' -> MET' if tune_met[-1] else ' -> MISSED'), flush=True)
    print(f'\none-liner targets met on {sum(met)} of {len(met)} problems'
          + (f'; tune on {sum(tune_met)} of {len(tune_met)}' if a.tune else '')
          + f'; total wall time {time.perf_counter() - t0:.0f}s')
    if a.out: Path(a.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == '__main__':
    main()
