"""The benches' own parts: every problem of bench/recommend.py and bench/suggest_unseen.py builds its data
and model offline, and the landscape bench reads accuracy between the rungs of its lr ladder as documented."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / 'bench'


def _load(name):
    spec = importlib.util.spec_from_file_location(f'bench_{name}', BENCH / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def recommend():
    return _load('recommend')


def test_every_problem_builds_its_split_and_a_model_that_fits_it(recommend):
    for name, p in recommend.PROBLEMS.items():
        x, y, xt, yt = p['data']()
        assert len(x) == len(y) > len(xt) == len(yt) > 0, name
        torch.manual_seed(0)
        out = p['model']()(x[:2])
        assert out.shape[0] == 2 and out.shape[1] > int(max(y.max(), yt.max())), name
        assert p['opt'] in ('sgd', 'adamw') and p['epochs'] >= 1 and p['bs'] >= 1


def test_the_mode_task_labels_the_most_frequent_token_the_smallest_on_a_tie(recommend):
    x, y, _, _ = recommend.mode_arrays(n=300, n_test=100)
    for seq, label in zip(x[:50], y[:50]):
        counts = torch.bincount(seq, minlength=24)
        assert int(label) == int(torch.nonzero(counts == counts.max())[0])


def test_the_landscape_interpolates_in_log_lr_and_holds_the_end_rungs():
    land = _load('suggest_landscape')
    acc = {'0.001': 0.5, '0.004': 0.9}
    assert land.accuracy_at(acc, 0.002) == pytest.approx(0.7)          # halfway in log lr
    assert land.accuracy_at(acc, 1e-5) == 0.5 and land.accuracy_at(acc, 1.) == 0.9
    assert math.isclose(land.accuracy_at(acc, 0.004), 0.9)


def test_every_unseen_problem_builds_offline_and_plain_adam_means_adam():
    unseen = _load('suggest_unseen')
    from onecycle.core.hyper import is_normalized
    for name, p in unseen.PROBLEMS.items():
        x, y, xt, yt = p['data']()
        assert len(x) == len(y) > len(xt) == len(yt) > 0, name
        torch.manual_seed(0)
        model = p['model']()
        out = model.eval()(x[:2])
        assert out.shape[0] == 2 and out.shape[1] > int(max(y.max(), yt.max())), name
        learn = unseen.learner(model, (x, y, xt, yt), p, seed=0)
        kinds = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW, 'sgd': torch.optim.SGD}
        assert type(learn.opt) is kinds[p['opt']], name
    held_out = list(unseen.PROBLEMS)[-4:]   # the normalized-model rule's check: SGD on BatchNorm / LayerNorm nets
    assert all(unseen.PROBLEMS[n]['opt'] == 'sgd' and is_normalized(unseen.PROBLEMS[n]['model']()) for n in held_out)


def test_unseen_against_grid_hands_its_problems_to_recommends_table(monkeypatch):
    unseen = _load('suggest_unseen')
    seen = {}
    monkeypatch.setattr(unseen.recommend, 'main', lambda argv: seen.setdefault('argv', argv))
    unseen.main(['--against-grid', '--problems', 'digits-cnn-adam', '--seeds', '1', '--cache', 'c.json'])
    assert seen['argv'][:4] == ['--problems', 'digits-cnn-adam', '--seeds', '1']
    assert 'digits-cnn-adam' in unseen.recommend.PROBLEMS
    assert unseen.recommend.opt_func('adam') is torch.optim.Adam
    assert unseen.recommend.opt_func('sgd').func is torch.optim.SGD
