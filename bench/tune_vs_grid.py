"""tune() + fit_one_cycle against a plain grid of constant Adam learning rates, on small problems
other than the one bench/mnist1d_baseline.py scores (issue 3: the recipe must not lose to such a grid).

Problems: the MNIST-1D MLP (40-100-100-10) and a synthetic teacher-student task (labels from a
random two-layer tanh network on Gaussian inputs, 10% of them flipped at random; a wider student
MLP learns them). The grid gets every advantage: each constant lr trains for the SAME total steps
tune + fit_one_cycle use together (tuning budget + final fit), and the grid's best lr is picked on
the test set itself. tune sees only a holdout cut from the training set, as in bench/mnist1d_baseline.py.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tune_vs_grid.py              # 2 seeds, both problems
    OMP_NUM_THREADS=1 .venv/bin/python bench/tune_vs_grid.py --seeds 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

_here = Path(__file__).resolve().parent
sys.path.insert(0, str(_here.parent))   # the repo first: runs from a checkout without installing
from onecycle import Learner, accuracy, fit_one_cycle, tune  # noqa: E402
from onecycle.data import mnist1d_arrays, teacher_arrays, tensor_dls  # noqa: E402
from onecycle.models import mlp  # noqa: E402

BS, FIT_STEPS, TUNE_BUDGET = 100, 2000, 2000
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)



PROBLEMS = {
    'mnist1d-mlp': (lambda seed: mnist1d_arrays(), lambda: mlp((40, 100, 100, 10))),
    'teacher-mlp': (lambda seed: teacher_arrays(seed=1000 + seed), lambda: mlp((20, 256, 256, 5))),
}


def learner(model, arrays, seed, opt_func):
    x, y, xv, yv = arrays
    return Learner(model, tensor_dls(x, y, xv, yv, bs=BS, seed=seed), F.cross_entropy, opt_func=opt_func,
                   metrics=[accuracy], progress=False, device='cpu')


def run(problem, seed):
    make_arrays, make_model = PROBLEMS[problem]
    x, y, xt, yt = make_arrays(seed)
    torch.manual_seed(seed)
    init = make_model().state_dict()
    def model():
        m = make_model(); m.load_state_dict(init); return m
    n_hold = len(x) // 10
    t = time.perf_counter()
    res = tune(learner(model(), (x[:-n_hold], y[:-n_hold], x[-n_hold:], y[-n_hold:]), seed, torch.optim.AdamW),
               budget=TUNE_BUDGET)
    final = learner(model(), (x, y, xt, yt), seed, torch.optim.AdamW)
    fit_one_cycle(final, FIT_STEPS // final.steps_per_epoch, **res.fit_kwargs)
    out = {'tuned': final.recorder.epochs[-1]['accuracy'], 'total_steps': res.steps + final.step_count,
           'tuned_s': time.perf_counter() - t, 'kwargs': res.fit_kwargs}
    for lr in GRID:   # each constant lr gets all the steps tune + fit took together
        base = learner(model(), (x, y, xt, yt), seed, torch.optim.Adam)
        base.fit(max(1, round(out['total_steps'] / base.steps_per_epoch)), lr=lr)
        out[lr] = base.recorder.epochs[-1]['accuracy']
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, default=2)
    p.add_argument('--problems', nargs='+', default=list(PROBLEMS), choices=list(PROBLEMS))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    verdicts = []
    for prob in a.problems:
        rows = []
        for s in range(a.seeds):
            r = run(prob, s); rows.append(r)
            k = r['kwargs']
            print(f"{prob} seed {s}: tune+fit_one_cycle {r['tuned']:.2%} "
                  f"({r['total_steps']} steps, {r['tuned_s']:.1f}s; "
                  f"max_lr={k['max_lr']:.3g} moms={k.get('moms')} wd={k.get('wd')}) | constant Adam: "
                  + ' '.join(f'{lr:g}:{r[lr]:.2%}' for lr in GRID), flush=True)
        mean = lambda k: statistics.mean(r[k] for r in rows)
        grid = {lr: mean(lr) for lr in GRID}
        best_lr = max(grid, key=grid.get)
        verdicts.append(mean('tuned') >= grid[best_lr])
        print(f"{prob}: mean test accuracy, tune+fit_one_cycle {mean('tuned'):.2%} vs best constant Adam lr "
              f"(lr={best_lr:g}, picked on the test set) {grid[best_lr]:.2%}; "
              f"same total steps ({mean('total_steps'):.0f})\n")
    print(f"total wall time {time.perf_counter() - t0:.1f}s;",
          'tune+fit_one_cycle matches or beats the best constant lr on every problem' if all(verdicts)
          else 'tune+fit_one_cycle LOSES to a constant lr on some problem')


if __name__ == '__main__':
    main()
