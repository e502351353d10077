"""The callback lists every entry point takes: anything that is not a callback is refused with a TypeError
naming it, before any work, and nothing is attached or changed."""
import pytest
import torch

from onecycle import Callback, GradientClipping, Learner, fit_one_cycle
from onecycle.core.callback import check_callbacks


class NotACallback:
    "A class with no event methods."


BAD = [pytest.param(None, id='None'), pytest.param(5, id='int'), pytest.param(int, id='class-int'),
       pytest.param(NotACallback, id='class-not-callback'), pytest.param(NotACallback(), id='object'),
       pytest.param('Recorder', id='str')]

# entry point name -> call(learn, cbs)
ENTRIES = {
    'Learner': lambda l, c: Learner(l.model, l.dls, l.loss_func, cbs=c, device='cpu', progress=False),
    'fit': lambda l, c: l.fit(1, cbs=c),
    'fit_one_cycle': lambda l, c: l.fit_one_cycle(1, 1e-2, cbs=c),
    'fit_one_cycle_callbacks': lambda l, c: fit_one_cycle(l, 1, 1e-2, callbacks=c),
    'fit_sgdr': lambda l, c: l.fit_sgdr(1, cbs=c),
    'fit_flat_cos': lambda l, c: l.fit_flat_cos(1, cbs=c),
    'fit_clr': lambda l, c: l.fit_clr(1, 1e-2, cbs=c),
    'fit_warmup_cos': lambda l, c: l.fit_warmup_cos(1, cbs=c),
    'fine_tune': lambda l, c: l.fine_tune(1, cbs=c),   # freezes the body first: that is undone too
    'get_preds': lambda l, c: l.get_preds(cbs=c),
    'add_cbs': lambda l, c: l.add_cbs(c),
    'added_cbs': lambda l, c: l.added_cbs(c).__enter__(),
}


def _state(learn):
    return ([p.detach().clone() for p in learn.model.parameters()], [p.requires_grad for p in learn.model.parameters()],
            [{k: v for k, v in pg.items() if k != 'params'} for pg in learn.opt.param_groups],
            learn.recorder.state_dict(), learn.step_count, learn.model.training)


CASES = [pytest.param(b.values[0], as_list, id=f'{b.id}-{"in-a-list" if as_list else "bare"}')
         for b in BAD for as_list in (True, False) if as_list or b.values[0] is not None]   # bare None: no callbacks


@pytest.mark.parametrize('bad, as_list', CASES)
@pytest.mark.parametrize('entry', list(ENTRIES))
def test_a_non_callback_is_refused_by_every_entry_point_and_attaches_nothing(make_learner, splitter, entry, bad,
                                                                             as_list):
    learn = make_learner(splitter=splitter)
    learn.fit(1, lr=1e-2)   # a history and counters to keep
    cbs_before, before = list(learn.cbs), _state(learn)
    cbs = [GradientClipping(1.), bad] if as_list else bad
    with pytest.raises(TypeError, match=r'cbs must be callbacks.*' + (r'cbs\[1\] is ' if as_list else 'got ')):
        ENTRIES[entry](learn, cbs)
    assert learn.cbs == cbs_before and all(a is b for a, b in zip(learn.cbs, cbs_before))
    w, rg, hp, rec, steps, mode = _state(learn)
    assert all(torch.equal(a, b) for a, b in zip(before[0], w)) and (rg, hp, rec, steps, mode) == before[1:]


def test_check_callbacks_instantiates_classes_and_takes_duck_typed_callbacks():
    class Duck:   # not a Callback, but it has an event method
        def after_batch(self): pass

    class Mine(Callback): pass
    out = check_callbacks('cbs', [Mine, Duck(), Callback()])
    assert isinstance(out[0], Mine) and isinstance(out[1], Duck) and len(out) == 3
    assert check_callbacks('cbs', None) == [] and len(check_callbacks('cbs', GradientClipping(1.))) == 1
