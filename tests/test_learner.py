"""The public Learner (onecycle/learner.py): its one-liners as methods, its default callbacks."""
import pytest

from onecycle import fit_one_cycle


@pytest.fixture
def tiny(make_learner):
    return lambda **kw: make_learner(**kw)


def test_the_one_liner_methods_have_the_functions_signatures_and_docs(tiny):
    import inspect
    import pydoc

    from onecycle import fine_tune, fit_sgdr, lr_find
    learn = tiny()
    for meth, fn in [(learn.lr_find, lr_find), (learn.fit_one_cycle, fit_one_cycle), (learn.fit_sgdr, fit_sgdr),
                     (learn.fine_tune, fine_tune)]:
        assert list(inspect.signature(meth).parameters) == list(inspect.signature(fn).parameters)[1:]
        assert meth.__doc__ == fn.__doc__ and meth.__doc__
    assert 'num_it' in pydoc.plain(pydoc.render_doc(learn.lr_find))
    assert '*args' not in str(inspect.signature(learn.lr_find))


def test_a_learner_under_torchrun_joins_no_process_group_until_it_fits(make_learner, monkeypatch):
    import torch.distributed as dist

    from onecycle import DistributedCallback, ProgressCallback
    for k, v in {'RANK': '1', 'WORLD_SIZE': '2', 'LOCAL_RANK': '1', 'MASTER_ADDR': '127.0.0.1',
                 'MASTER_PORT': '29999'}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(dist, 'init_process_group', lambda *a, **k: pytest.fail('joined a group in Learner()'))
    learn = make_learner(progress=True)
    assert any(isinstance(c, DistributedCallback) for c in learn.cbs)
    assert not any(isinstance(c, ProgressCallback) for c in learn.cbs)   # rank 1 shows no bars
    assert not dist.is_initialized()
