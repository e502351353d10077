"""get_preds and predict: predictions in the loader's order, targets, inputs, per-item losses, activations,
loaders without targets, the model's mode and the learner's results left alone, bad arguments refused."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import Callback, get_preds, per_item_loss, predict
from onecycle.callbacks.gpu import SyncCheck

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _valid_xy(learn):
    ds = learn.dls.valid.dataset
    return ds.tensors[0], ds.tensors[1]


def test_preds_and_targets_are_the_models_outputs_over_the_validation_set_in_order(make_learner):
    learn = make_learner()
    learn.fit(1, lr=0.1)
    preds, targs = learn.get_preds()
    x, y = _valid_xy(learn)
    with torch.no_grad(): expected = learn.model.eval()(x)
    assert preds.device.type == 'cpu' and preds.shape == (32, 2) and not preds.requires_grad
    torch.testing.assert_close(preds, expected)
    assert torch.equal(targs, y)


def test_inputs_losses_and_activation(make_learner):
    learn = make_learner()
    learn.fit(1, lr=0.1)
    x, y = _valid_xy(learn)
    inputs, probs, targs, losses = learn.get_preds(with_input=True, with_loss=True, act=lambda p: p.softmax(-1))
    assert torch.equal(inputs, x) and torch.equal(targs, y)
    torch.testing.assert_close(probs.sum(-1), torch.ones(32))
    with torch.no_grad(): logits = learn.model(x)
    torch.testing.assert_close(probs, logits.softmax(-1))
    torch.testing.assert_close(losses, F.cross_entropy(logits, y, reduction='none'))   # from the logits, not act
    assert learn.loss_func.reduction == 'mean'   # the user's loss is left as it was


def test_a_shuffled_loader_gives_its_own_order_and_inputs_match_preds(make_learner):
    learn = make_learner()
    x, y = _valid_xy(learn)
    dl = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(1))
    inputs, preds, targs = learn.get_preds(dl, with_input=True)
    assert not torch.equal(inputs, x) and sorted(inputs[:, 0].tolist()) == sorted(x[:, 0].tolist())
    with torch.no_grad(): torch.testing.assert_close(preds, learn.model(inputs))
    assert torch.equal(targs, y[[int((x == r).all(1).nonzero()) for r in inputs]])


def test_a_loader_without_targets(make_learner):
    learn = make_learner()
    x, _ = _valid_xy(learn)
    preds, targs = learn.get_preds(DataLoader(TensorDataset(x), batch_size=7))
    assert targs is None and preds.shape == (32, 2)
    with pytest.raises(ValueError, match='targets'):
        learn.get_preds(DataLoader(TensorDataset(x), batch_size=7), with_loss=True)


def test_the_models_mode_the_learners_results_and_its_callbacks_are_left_as_they_were(make_learner):
    learn = make_learner(model_kw=dict(bn=True))
    learn.fit(1, lr=0.1)
    before = dict(learn.recorder.last_valid)
    cbs, n_losses = list(learn.cbs), len(learn.recorder.losses)
    stats = learn.model[1].running_mean.clone()
    learn.model.train()
    learn.get_preds()
    assert learn.model.training and torch.equal(learn.model[1].running_mean, stats)   # eval mode inside
    learn.model.eval()
    learn.get_preds(); learn.predict(torch.randn(3, 8))
    assert not learn.model.training
    assert learn.recorder.last_valid == before and learn.cbs == cbs and len(learn.recorder.losses) == n_losses


def test_callbacks_see_the_batches_and_after_pred_changes_reach_the_preds(make_learner):
    learn = make_learner()

    class Double(Callback):
        def after_pred(self): self.learn.pred = self.learn.pred * 2
    x, _ = _valid_xy(learn)
    with torch.no_grad(): expected = learn.model(x) * 2
    torch.testing.assert_close(learn.get_preds(cbs=[Double()])[0], expected)
    assert not any(isinstance(c, Double) for c in learn.cbs)


def test_per_item_loss_for_functions_and_multi_dimensional_losses(make_learner):
    learn = make_learner(loss_func=F.cross_entropy)
    x, y = _valid_xy(learn)
    *_, losses = learn.get_preds(with_loss=True)
    with torch.no_grad(): torch.testing.assert_close(losses, F.cross_entropy(learn.model(x), y, reduction='none'))
    # a regression loss over 2 outputs: one loss per item, the mean over its outputs
    reg = make_learner(loss_func=nn.MSELoss(), dls=(DataLoader(TensorDataset(x, x[:, :2]), batch_size=8),) * 2)
    *_, losses = reg.get_preds(with_loss=True)
    with torch.no_grad(): torch.testing.assert_close(losses, ((reg.model(x) - x[:, :2]) ** 2).mean(1))
    f = per_item_loss(nn.CrossEntropyLoss(label_smoothing=0.1))
    assert f.reduction == 'none' and f.label_smoothing == 0.1


def test_bad_arguments_are_refused_before_any_batch_runs(make_learner):
    learn = make_learner()
    calls = []
    learn.model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(TypeError, match='dl'): learn.get_preds(dl=5)
    with pytest.raises(ValueError, match='dl'): learn.get_preds(dl=[])
    with pytest.raises(TypeError, match='with_input'): learn.get_preds(with_input='yes')
    with pytest.raises(TypeError, match='with_loss'): learn.get_preds(with_loss=1)
    with pytest.raises(TypeError, match='act'): learn.get_preds(act='softmax')
    with pytest.raises(TypeError, match='cbs'): learn.get_preds(cbs=[3])
    with pytest.raises(TypeError, match='reduction'):
        make_learner(loss_func=lambda p, y: F.cross_entropy(p, y)).get_preds(with_loss=True)
    with pytest.raises(ValueError, match='needs a loss_func'): make_learner(loss_func=None).get_preds(with_loss=True)
    with pytest.raises(TypeError, match='x must be'): learn.predict('an image')
    with pytest.raises(TypeError, match='act'): learn.predict(torch.randn(2, 8), act=1)
    assert not calls
    with pytest.raises(ValueError, match='dls.valid|no data'): make_learner(dls_kw=dict(valid=False)).get_preds()


def test_predict_one_batch_of_inputs(make_learner):
    learn = make_learner()
    x = torch.randn(5, 8)
    with torch.no_grad(): expected = learn.model(x)
    torch.testing.assert_close(predict(learn, x), expected)
    torch.testing.assert_close(learn.predict((x,), act=lambda p: p.argmax(-1)), expected.argmax(-1))

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__(); self.lin = nn.Linear(8, 2)
        def forward(self, a, b=None, scale=1.): return self.lin(a + b) * scale
    two = make_learner(model=TwoInputs(), n_inp=2)
    with torch.no_grad(): expected = two.model(x, x)
    torch.testing.assert_close(two.predict((x, x)), expected)
    torch.testing.assert_close(two.predict({'a': x, 'b': x, 'scale': 3.}), expected * 3)


def test_the_function_and_the_method_agree(make_learner):
    learn = make_learner()
    a, b = get_preds(learn), learn.get_preds()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@needs_cuda
def test_no_host_device_synchronisation_per_batch_on_a_gpu(make_learner):
    learn = make_learner(device='cuda')
    inputs, preds, targs, losses = learn.get_preds(with_input=True, with_loss=True, cbs=[SyncCheck('error')])
    x, y = _valid_xy(learn)
    assert preds.device.type == 'cpu' and torch.equal(inputs, x) and torch.equal(targs, y)
    with torch.no_grad(): torch.testing.assert_close(preds, learn.model(x.cuda()).cpu())


# --- two processes (torchrun, gloo) -------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    "Run tests/predict_script.py on two processes once; what each rank saved."
    from launch import rank_results, torchrun
    out = tmp_path_factory.mktemp('predict_ddp')
    torchrun('predict_script.py', out)
    return rank_results(out)


def test_every_rank_gets_the_whole_set_in_dataset_order(ranks):
    import predict_script as ps
    _, _, xv, yv = ps.make_data()
    model = ps.make_model()
    model.load_state_dict(ranks[0]['state'])
    with torch.no_grad(): logits = model(xv)
    for r in ranks:
        assert r['sampler'] == 'ShardSampler'   # the validation loader was sharded by the fit
        inputs, preds, targs, losses = r['tuple']
        assert torch.equal(inputs, xv) and torch.equal(targs, yv) and preds.shape == (ps.N_VALID, 2)
        torch.testing.assert_close(preds, logits)
        torch.testing.assert_close(losses, F.cross_entropy(logits, yv, reduction='none'))
        inputs, preds, targs = r['padded']   # a shuffled, padded DistributedSampler: dataset order, each item once
        assert torch.equal(inputs, xv) and torch.equal(targs, yv)
        torch.testing.assert_close(preds, logits)


def test_dict_batches_train_data_parallel_with_the_models_own_loss(ranks):
    import predict_script as ps
    _, _, xv, yv = ps.make_data()
    a, b = ranks
    for k in a['dict_state']: assert torch.equal(a['dict_state'][k], b['dict_state'][k]), k
    assert a['dict_losses'] == b['dict_losses'] and len(a['dict_losses']) == 2 * 2   # 32 items, 2 ranks x 8
    model = ps.DictModel()
    model.load_state_dict(a['dict_state'])
    with torch.no_grad(): logits = model(xv)['logits']
    assert a['dict_valid'] == pytest.approx(F.cross_entropy(logits, yv).item(), rel=1e-5)   # over all 21 items
    for r in ranks:
        inputs, preds, targs = r['dict']
        assert torch.equal(inputs['x'], xv) and torch.equal(inputs['labels'], yv) and torch.equal(targs, yv)
        torch.testing.assert_close(preds, logits)
