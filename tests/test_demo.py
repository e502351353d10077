"""The command line (`onecycle` / `python -m onecycle`) and the demo it runs."""
import pytest

import onecycle.demo as demo


@pytest.fixture
def parsed(monkeypatch):
    "main(argv) -> the arguments run_demo would get, without running it."
    def run(argv):
        got = {}
        monkeypatch.setattr(demo, 'run_demo', lambda *a: got.update(zip(('epochs', 'bs', 'seed', 'out', 'progress',
                                                                          'threads'), a)))
        assert demo.main(argv) == 0
        return got
    return run


@pytest.mark.parametrize('argv', [['--epochs', '3', 'demo'], ['demo', '--epochs', '3'], ['--epochs', '3']])
def test_options_before_or_after_the_command_mean_the_same(parsed, argv):
    assert parsed(argv) == dict(epochs=3, bs=100, seed=0, out='onecycle_out', progress=True, threads=None)


def test_each_option_is_kept_wherever_it_is_given(parsed):
    got = parsed(['--seed', '7', '--no-progress', 'demo', '--bs', '50', '--out', 'x'])
    assert got == dict(epochs=20, bs=50, seed=7, out='x', progress=False, threads=None)
    assert parsed(['--epochs', '3', 'demo', '--epochs', '4'])['epochs'] == 4   # the later one wins
    assert parsed([]) == parsed(['demo'])


def test_demo_help_has_a_description_and_every_option_help(capsys):
    with pytest.raises(SystemExit) as e: demo.main(['demo', '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert 'MNIST-1D' in out and 'range test' in out and 'summary.txt' in out
    for opt in ('--epochs', '--bs', '--seed', '--out', '--no-progress', '--threads'):
        line = next(l for l in out.splitlines() if l.strip().startswith(opt))
        assert len(line.split(maxsplit=2)) == 3 or opt == '--no-progress', line   # a help text beside it
    assert 'seed for the weights' in out


@pytest.mark.parametrize('argv,word', [(['--epochs', '0'], '--epochs'), (['demo', '--bs', '0'], '--bs'),
                                       (['demo', '--threads', '0'], '--threads'), (['train'], 'invalid choice')])
def test_bad_options_are_refused(argv, word, capsys, monkeypatch):
    monkeypatch.setattr(demo, 'run_demo', lambda *a: pytest.fail('ran'))
    with pytest.raises(SystemExit) as e: demo.main(argv)
    assert e.value.code == 2 and word in capsys.readouterr().err


def test_a_short_demo_runs_and_writes_its_files(tmp_path, capsys):
    pytest.importorskip('mnist1d')
    s = demo.run_demo(epochs=1, out=str(tmp_path), progress=False, threads=1)
    assert s['steps'] == 40 and 0.2 < s['test_accuracy'] <= 1
    assert {p.name for p in tmp_path.iterdir()} == {'lr_find.png', 'losses.png', 'schedule.png', 'summary.txt'}
    assert 'diagnosis needs 3 epochs' in (tmp_path / 'summary.txt').read_text()
