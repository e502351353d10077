"""Where does the best max_lr sit relative to the range test's max bound M? For every problem of
bench/recommend.py and every seed: the default range test (100 steps), then full 1cycle fits at
M * 2**(k/2) for k = -12..1 (M/64 to 1.4 M, at the optimizer's default weight decay), test accuracy.

It prints, per problem, each lr_find suggestion's mean gap to the best rung (accuracy interpolated
in log lr between rungs), and the gap of every factor of M: the evidence behind the 'fit' rule's
exponents (0.2 for SGD-like optimizers, 0 for Adam-like ones, applied to the sweep's floor edge E; see
onecycle.tuning.suggest).

    OMP_NUM_THREADS=1 .venv/bin/python bench/suggest_landscape.py                 # every problem, 3 seeds
    OMP_NUM_THREADS=1 .venv/bin/python bench/suggest_landscape.py --problems teacher-mlp-adamw --seeds 1

The fits are cached in --cache (JSON), keyed by problem, seed and M, so a rule change re-reads them
without refitting.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

_here = Path(__file__).resolve().parent
sys.path.insert(0, str(_here.parent))   # the repo first: runs from a checkout without installing
_spec = importlib.util.spec_from_file_location('recommend', _here / 'recommend.py')
recommend = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recommend)

from onecycle.tuning.suggest import exposure_exponent, smooth_sweep, suggest_edge, suggest_for_fit  # noqa: E402

RUNGS = range(-12, 2)   # M * 2 ** (k / 2)


def landscape(name, arrays, seed) -> dict:
    "The range test and the full fits on the lr ladder for one problem (its `arrays`) and seed."
    p = recommend.PROBLEMS[name]
    torch.manual_seed(seed)
    init = p['model']().state_dict()
    def model_fn():
        m = p['model'](); m.load_state_dict(init); return m
    learn = recommend.learner(model_fn(), arrays, p, seed)
    res = learn.lr_find(n_epoch=p['epochs'])
    m = res.max_bound
    acc = {}
    for k in RUNGS:
        lr = m * 2 ** (k / 2)
        acc[f'{lr:.6g}'] = recommend.one_cycle(recommend.learner(model_fn(), arrays, p, seed), p['epochs'], lr)
    return {'suggestions': dict(res.suggestions), 'sweep': [list(res.train_lrs), list(res.train_losses)],
            'fit_steps': res.fit_steps, 'adaptive': p['opt'] != 'sgd', 'acc': acc}


def accuracy_at(acc: dict, lr: float) -> float:
    "Test accuracy at `lr`, linear in log lr between the rungs (the end rungs' value outside them)."
    pts = sorted((math.log(float(k)), v) for k, v in acc.items())
    x = math.log(lr)
    if x <= pts[0][0]: return pts[0][1]
    if x >= pts[-1][0]: return pts[-1][1]
    for (a, u), (b, v) in zip(pts, pts[1:]):
        if a <= x <= b: return u + (v - u) * (x - a) / (b - a)


def fit_rule(row, exponent) -> float:
    "The 'fit' suggestion for this sweep and fit with another exposure exponent."
    lrs, losses = row['sweep']
    return suggest_for_fit(lrs, smooth_sweep(losses), row['fit_steps'], sweep_lrs=lrs, exponent=exponent,
                           raw_losses=losses)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--problems', nargs='+', default=list(recommend.PROBLEMS), choices=list(recommend.PROBLEMS))
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--cache', default=str(Path.home() / '.cache' / 'onecycle_suggest_landscape.json'))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cache_path = Path(a.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    t0 = time.perf_counter()
    table = {}
    for name in a.problems:
        rows, arrays = [], None
        for seed in range(a.seeds):
            key = f'{name}/{seed}'
            if key not in cache:
                if arrays is None: arrays = recommend.PROBLEMS[name]['data']()   # once per problem, if any fit runs
                cache[key] = landscape(name, arrays, seed)
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(cache))
            rows.append(cache[key])
        table[name] = rows
    factors = [k / 4 for k in range(-12, 3)]
    print('mean test-accuracy gap (points) to the best rung, 3 seeds; (x) = the rule\'s mean log2(lr / M)\n')
    names = ['fit', 'edge', 'max_bound', 'steep', 'valley', 'minimum']
    print(f'{"problem":20s} {"best":>6s} ' + ' '.join(f'{n:>15s}' for n in names) + '   fit with the other exponent')
    for name, rows in table.items():
        best = statistics.mean(max(r['acc'].values()) for r in rows)
        cells = []
        for n in names:   # 'fit' and 'edge' from the current rules (the cache may predate them); the others as measured
            lr = {id(r): fit_rule(r, exposure_exponent(r['adaptive'])) if n == 'fit'
                  else suggest_edge(r['sweep'][0], smooth_sweep(r['sweep'][1])) if n == 'edge' else r['suggestions'][n]
                  for r in rows}
            gap = statistics.mean(accuracy_at(r['acc'], lr[id(r)]) for r in rows) - best
            rel = statistics.mean(math.log2(lr[id(r)] / r['suggestions']['max_bound']) for r in rows)
            cells.append(f'{100 * gap:+6.2f} ({rel:+4.1f})')
        other = exposure_exponent(not rows[0]['adaptive'])
        gap = statistics.mean(accuracy_at(r['acc'], fit_rule(r, other)) for r in rows) - best
        print(f'{name:20s} {100 * best:6.2f} ' + ' '.join(f'{c:>15s}' for c in cells)
              + f'   {100 * gap:+6.2f} (exponent {other:g})')
    print('\ngap (points) at a fixed factor of M, log2(lr / M):')
    print(f'{"problem":20s} ' + ' '.join(f'{f:+6.2f}' for f in factors))
    for name, rows in table.items():
        best = statistics.mean(max(r['acc'].values()) for r in rows)
        gaps = [statistics.mean(accuracy_at(r['acc'], r['suggestions']['max_bound'] * 2 ** f) for r in rows) - best
                for f in factors]
        print(f'{name:20s} ' + ' '.join(f'{100 * g:+6.2f}' for g in gaps))
    print(f'\ntotal wall time {time.perf_counter() - t0:.0f}s')


if __name__ == '__main__':
    main()
