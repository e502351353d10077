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
