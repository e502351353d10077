"""Progress output: a table row per epoch when on, nothing at all when off."""
import re

import pytest

from onecycle import ProgressCallback, accuracy


def _rows(out):
    return [l for l in out.splitlines() if re.match(r'\s*\d+\s', l)]


def test_progress_prints_one_table_row_per_epoch(make_learner, capsys):
    learn = make_learner(progress=True, metrics=[accuracy])
    capsys.readouterr()
    learn.fit(3, lr=0.1)
    out = capsys.readouterr().out
    header = next(l for l in out.splitlines() if 'train_loss' in l)
    assert header.split() == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']
    rows = _rows(out)
    assert [r.split()[0] for r in rows] == ['0', '1', '2']
    for r, e in zip(rows, learn.recorder.epochs):
        cells = r.split()
        assert len(cells) == 5
        assert float(cells[1]) == pytest.approx(e['train_loss'], abs=1e-6)
        assert float(cells[2]) == pytest.approx(e['valid_loss'], abs=1e-6)
        assert float(cells[3]) == pytest.approx(e['accuracy'], abs=1e-6)
        assert re.fullmatch(r'\d+:\d\d(:\d\d)?', cells[4])


def test_progress_bars_in_an_interactive_terminal(make_learner, capsys, monkeypatch):
    import onecycle.callbacks.progress as progress
    if not hasattr(progress, '_interactive'): pytest.skip('progress has no terminal detection')
    monkeypatch.setattr(progress, '_interactive', lambda: True)   # as if stdout were a terminal
    learn = make_learner(progress=True)
    capsys.readouterr()
    learn.fit(2, lr=0.1)
    out = capsys.readouterr().out
    assert 'train_loss' in out and len(_rows(out)) >= 2


def test_progress_off_prints_nothing(make_learner, capsys):
    learn = make_learner(progress=True)
    assert learn.progress and any(isinstance(c, ProgressCallback) for c in learn.cbs)
    learn.progress = False
    assert not learn.progress and not any(isinstance(c, ProgressCallback) for c in learn.cbs)
    capsys.readouterr()
    learn.fit(2, lr=0.1); learn.validate(); learn.lr_find(num_it=10)
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err == ''
    learn.progress = True
    learn.progress = True                      # idempotent: still one progress callback
    assert sum(isinstance(c, ProgressCallback) for c in learn.cbs) == 1


def test_progress_false_in_the_constructor(make_learner, capsys):
    learn = make_learner(progress=False)
    capsys.readouterr()
    learn.fit_one_cycle(2, 0.1)
    assert capsys.readouterr().out == ''


# --- the range test's bar and tune's lines -------------------------------------------------------------
def test_range_test_prints_one_line_and_no_epoch_table_in_a_log(make_learner, capsys):
    learn = make_learner(progress=True, metrics=[accuracy])
    capsys.readouterr()
    res = learn.lr_find(num_it=30)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1 + bool(res.held), out                 # no table of nan rows, no bar in a log
    n = len(res.train_lrs)
    assert lines[0].startswith(f'LR range test: {n} of 30 steps, lr 1.0e-07 to ')
    if res.held:   # SGD on a plain model: the hold check's line, naming what it did
        assert lines[1].startswith('hold check: ') and f"{res.held['steps']} steps)" in lines[1]
        assert ('kept' in lines[1]) == (res.suggestion == res.held['unchecked'])
    assert 'nan' not in out and 'valid_loss' not in out
    assert ('stopped early' in out) == res.stopped_early
    learn.fit(1, lr=0.1)                                         # the epoch table is back for a fit
    assert 'valid_loss' in capsys.readouterr().out


def test_range_test_bar_shows_step_lr_and_smoothed_loss_where_a_person_watches(make_learner, capsys, monkeypatch):
    import onecycle.callbacks.progress as progress
    monkeypatch.setattr(progress, '_interactive', lambda: True)
    learn = make_learner(progress=True)
    capsys.readouterr()
    learn.lr_find(num_it=20, stop_div=False)
    out = capsys.readouterr().out
    assert '[20/20' in out and 'smoothed loss' in out and 'lr 1.0e+01' in out.replace('lr 1e+01', 'lr 1.0e+01')
    assert 'valid_loss' not in out                               # the epoch table stood aside
    assert any(line.startswith('LR range test: 20 of 20 steps') for line in out.rstrip().splitlines())


def test_range_test_progress_smooths_like_the_range_test(make_learner):
    from onecycle import smooth_ema
    from onecycle.callbacks.progress import RangeTestProgress
    from onecycle.tuning.range_test import LRFinder
    learn = make_learner()
    finder, bar = LRFinder(num_it=12, stop_div=False), RangeTestProgress(12)
    learn.fit(3, cbs=[finder, bar])
    assert bar.k == 12 and bar.lrs == pytest.approx(finder.lrs)
    assert bar.smooth == pytest.approx(smooth_ema(finder.losses, 0.98))


def test_tune_prints_one_line_per_stage(make_learner, capsys):
    from onecycle import tune
    learn = make_learner(progress=True, dls_kw={'n_train': 128})
    capsys.readouterr()
    res = tune(learn, budget=300)
    lines = capsys.readouterr().out.splitlines()
    stages = [l.split(':')[1].strip() for l in lines]
    assert all(l.startswith('tune: ') for l in lines), lines
    assert stages == ['range test', 'noise', 'lr', 'momentum', 'weight decay', 'check', 'done']   # skipped ones too
    spent = sum(int(re.search(r'; (\d+) steps$', l).group(1)) for l in lines[:-1] if 'skipped' not in l)
    assert spent == res.steps and f'{res.steps} of 300 optimizer steps' in lines[-1]
    assert f'max bound {res.lr_find.max_bound:.1e}' in lines[0]
    assert f'suggestion for the fit {res.lr_find.suggestion:.1e}' in lines[0]
    for line, s in zip(lines[2:5], (res.lr_search, res.mom_search, res.wd_search)):
        if s is not None: assert f'; {s.steps} steps' in line and line.count(',') >= len(s.candidates) - 1
    assert learn.progress and sum(isinstance(c, ProgressCallback) for c in learn.cbs) == 1


def test_tune_is_silent_without_progress(make_learner, capsys):
    from onecycle import tune
    learn = make_learner(progress=False)
    capsys.readouterr()
    tune(learn, budget=200, search_moms=False, search_wd=False)
    assert capsys.readouterr().out == ''
    assert not any(getattr(c, 'replaces_progress', False) for c in learn.cbs)   # its stage callback is gone


# --- without fastprogress -------------------------------------------------------------------------------
def _without_fastprogress(monkeypatch, terminal):
    "As on a machine where fastprogress is missing (``None`` in sys.modules makes its import fail)."
    import sys

    import onecycle.callbacks.progress as progress
    monkeypatch.setitem(sys.modules, 'fastprogress', None)
    monkeypatch.setitem(sys.modules, 'fastprogress.fastprogress', None)
    monkeypatch.setattr(progress, '_told_no_bars', False)
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: terminal, raising=False)


def test_without_fastprogress_a_fit_trains_and_prints_its_table_as_in_a_log(make_learner, capsys, monkeypatch):
    _without_fastprogress(monkeypatch, terminal=False)
    learn = make_learner(progress=True, metrics=[accuracy])
    capsys.readouterr()
    learn.fit(2, lr=0.1)
    out = capsys.readouterr().out
    assert [r.split()[0] for r in _rows(out)] == ['0', '1'] and len(learn.recorder.epochs) == 2
    res = learn.lr_find(num_it=20)
    assert capsys.readouterr().out.splitlines()[0].startswith('LR range test: ') and res.suggestion > 0


def test_without_fastprogress_a_terminal_is_told_once_why_there_are_no_bars(make_learner, capsys, monkeypatch):
    _without_fastprogress(monkeypatch, terminal=True)
    learn = make_learner(progress=True)
    with pytest.warns(UserWarning, match='fastprogress is not installed') as seen:
        learn.fit(2, lr=0.1)
        learn.fit(1, lr=0.1)
    assert len([w for w in seen if 'fastprogress' in str(w.message)]) == 1
    assert [r.split()[0] for r in _rows(capsys.readouterr().out)] == ['0', '1', '0']


def test_a_range_test_bar_whose_before_fit_failed_leaves_the_first_error_alone(make_learner, monkeypatch):
    "after_fit runs after a failed before_fit too: the range test's bar must not add an error of its own."
    from onecycle.callbacks.progress import RangeTestProgress

    def broken(total): raise ImportError('no bars here')
    monkeypatch.setattr('onecycle.callbacks.progress._Bar', broken)
    learn = make_learner()
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(ImportError, match='no bars here') as err:
        learn.fit(1, cbs=[RangeTestProgress(5)])
    assert not any('during cleanup' in n for n in getattr(err.value, '__notes__', []))
    assert all((a == p).all() for a, p in zip(before, learn.model.parameters()))
