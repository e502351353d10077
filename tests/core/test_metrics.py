"""Validation metrics: functions averaged per batch, metric objects (torchmetrics) accumulated over the
whole validation set, their column names, and the checks on ``metrics=``."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import functools

from onecycle import Callback, CancelTrainException, Learner, accuracy, accuracy_multi, error_rate
from onecycle.core.metrics import check_metrics, metric_name, metric_value

tm = pytest.importorskip('torchmetrics')
from torchmetrics.classification import MulticlassAUROC, MulticlassF1Score  # noqa: E402
from torchmetrics.functional.classification import (binary_accuracy, multiclass_accuracy,  # noqa: E402
                                                    multiclass_auroc, multiclass_f1_score, multilabel_accuracy)

N_VALID = 76
UNEVEN = [3, 17, 5, 40, 11]   # batch sizes of the validation pass


def _data(seed=0):
    "Three noisy classes: an untrained model gets F1 and AUROC well away from 0 and 1."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64 + N_VALID, 6, generator=g)
    y = ((x[:, 0] + 0.8 * torch.randn(len(x), generator=g)) > 0).long() + (x[:, 1] > 0.7).long()
    return x, y


def _learner(metrics, seed=0, **kw):
    x, y = _data(seed)
    start, batches = 0, []
    for b in UNEVEN: batches.append(list(range(start, start + b))); start += b
    valid = DataLoader(TensorDataset(x[64:], y[64:]), batch_sampler=batches)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    return Learner(model, (train, valid), nn.CrossEntropyLoss(), metrics=metrics, progress=False, device='cpu', **kw)


def _whole_set(learn):
    "Predictions and targets of the validation set in one batch."
    x, y = _data()
    with torch.no_grad(): return learn.model.eval()(x[64:]), y[64:]


class NoTraining(Callback):
    def before_train(self): raise CancelTrainException()


def test_torchmetrics_cover_the_whole_validation_set_not_a_mean_of_batches():
    learn = _learner([MulticlassF1Score(num_classes=3, average='macro'), MulticlassAUROC(num_classes=3), accuracy])
    learn.fit(1, cbs=[NoTraining()])
    row = learn.recorder.epochs[0]
    pred, y = _whole_set(learn)
    f1, auroc = multiclass_f1_score(pred, y, 3, average='macro').item(), multiclass_auroc(pred, y, 3).item()
    assert 0.2 < f1 < 0.9 and 0.3 < auroc < 0.95   # a metric with room to be wrong
    assert row['multiclass_f1_score'] == pytest.approx(f1, abs=1e-6)
    assert row['multiclass_auroc'] == pytest.approx(auroc, abs=1e-6)
    assert row['accuracy'] == pytest.approx((pred.argmax(1) == y).float().mean().item(), abs=1e-6)
    # the old way, averaging per-batch values weighted by batch size, gives other numbers for these metrics
    chunks = list(zip(pred.split(UNEVEN), y.split(UNEVEN)))
    per_batch = sum(multiclass_f1_score(p, t, 3, average='macro').item() * len(t) for p, t in chunks) / N_VALID
    assert abs(per_batch - f1) > 1e-3


def test_metric_objects_are_reset_every_pass():
    f1 = MulticlassF1Score(num_classes=3, average='macro')
    learn = _learner({'f1': f1}, lr=0.05)
    learn.fit(3)
    pred, y = _whole_set(learn)
    # the last epoch's value is that of the final weights alone, not of three epochs' predictions
    assert learn.recorder.epochs[-1]['f1'] == pytest.approx(multiclass_f1_score(pred, y, 3, average='macro').item(),
                                                            abs=1e-6)
    assert len({r['f1'] for r in learn.recorder.epochs}) > 1   # the weights changed, so did the metric
    again = [learn.validate()['f1'] for _ in range(2)]
    assert again[0] == again[1] == pytest.approx(learn.recorder.epochs[-1]['f1'], abs=1e-6)
    assert f1.update_count == len(UNEVEN)   # only the last pass's batches


def test_metric_objects_move_to_the_learner_device():
    class Count:
        "A metric object (not torchmetrics): update/compute/reset, a device and to()."
        def __init__(self): self.device, self.moves, self.n = torch.device('meta'), [], 0
        def to(self, device): self.moves.append(device); self.device = device; return self
        def reset(self): self.n = 0
        def update(self, pred, y):
            assert pred.device == self.device; self.n += len(y)
        def compute(self): return self.n
    m = Count()
    learn = _learner([m])
    learn.validate(); learn.validate()
    assert learn.recorder.last_valid['count'] == N_VALID
    assert m.moves == [torch.device('cpu')]   # moved once, not every pass


def test_names_default_dict_and_collection():
    f1 = MulticlassF1Score(num_classes=3)
    assert metric_name(f1) == 'multiclass_f1_score' and metric_name(accuracy) == 'accuracy'
    assert metric_name(tm.MeanSquaredError()) == 'mean_squared_error'
    from functools import partial
    assert metric_name(partial(multiclass_f1_score, num_classes=3)) == 'multiclass_f1_score'
    learn = _learner({'f1': MulticlassF1Score(num_classes=3, average='macro'), 'acc': accuracy})
    assert learn.recorder.metric_names == ['epoch', 'train_loss', 'valid_loss', 'f1', 'acc', 'time']
    coll = tm.MetricCollection({'f1': MulticlassF1Score(num_classes=3, average='macro'),
                                'auroc': MulticlassAUROC(num_classes=3)}, prefix='val_')
    learn = _learner([coll, accuracy])
    res = learn.validate()
    pred, y = _whole_set(learn)
    assert sorted(res) == ['accuracy', 'val_auroc', 'val_f1', 'valid_loss']   # a collection orders its own
    assert res['val_auroc'] == pytest.approx(multiclass_auroc(pred, y, 3).item(), abs=1e-6)


@pytest.mark.parametrize('metrics, err, match', [
    ([MulticlassF1Score(num_classes=3), MulticlassF1Score(num_classes=3, average='micro')], ValueError,
     "two metrics are named 'multiclass_f1_score'"),
    ({'valid_loss': accuracy}, ValueError, 'recorder fills itself'),
    ({3: accuracy}, TypeError, 'column names'),
    ([accuracy, 'f1'], TypeError, 'metrics must be callable'),
    ({'f1': None}, TypeError, 'metrics must be callable'),
])
def test_bad_metrics_are_refused_up_front(metrics, err, match):
    with pytest.raises(err, match=match): check_metrics(metrics)
    with pytest.raises(err, match=match): _learner(metrics)


def test_a_metric_that_is_not_one_number_says_so():
    learn = _learner([MulticlassF1Score(num_classes=3, average=None)])
    with pytest.raises(ValueError, match=r"'multiclass_f1_score' computed a tensor of shape \(3,\).*average"):
        learn.validate()


class Returns:
    "A metric giving `value`, per batch (a function) or from compute() (an accumulating object); counts its calls."
    def __init__(self, value, accumulate):
        self.value, self.calls, self.name = value, 0, 'odd'
        if accumulate: self.update, self.reset, self.compute = (lambda *a: None), (lambda: None), self._give
    def _give(self, *a):
        self.calls += 1
        return self.value
    def __call__(self, pred, targ): return self._give()


NOT_A_NUMBER = [('str', 'abc', TypeError, "'odd' (returned|computed) str 'abc'"),
                ('none', None, TypeError, "(returned|computed) NoneType None"),
                ('list', [0.5], TypeError, r'(returned|computed) list \[0.5\]'),
                ('dict', {'acc': 0.5}, TypeError, '(returned|computed) dict'),
                ('complex', torch.tensor(1 + 2j), TypeError, 'complex value'),
                ('several', torch.ones(3), ValueError, r'tensor of shape \(3,\)')]


@pytest.mark.parametrize('accumulate', [False, True], ids=['function', 'object'])
@pytest.mark.parametrize('name, value, err, match', NOT_A_NUMBER, ids=[c[0] for c in NOT_A_NUMBER])
def test_a_metric_result_that_is_not_a_number_is_refused_in_the_first_validation(name, value, err, match, accumulate):
    m = Returns(value, accumulate)
    learn = _learner([m])
    with pytest.raises(err, match=match): learn.fit(3)
    assert m.calls == 1 and learn.epoch == 0                          # the first batch (pass) it gave it: epoch 0
    assert learn.recorder.epochs == [] and learn.recorder.last_valid == {}   # no row with a bogus value
    with pytest.raises(err, match=match): learn.validate()


@pytest.mark.parametrize('value', [0.5, 1, True, np.float32(0.5), np.array([0.5]), torch.tensor([[0.5]]),
                                   torch.tensor(1)])
def test_numbers_and_one_element_tensors_are_metric_values(value):
    t = metric_value(accuracy, value)
    assert t.shape == () and float(t) == float(torch.as_tensor(value).reshape(()))
    learn = _learner([Returns(value, False)])
    assert learn.validate()['odd'] == pytest.approx(float(t))


def test_a_cancelled_validation_gives_nan_without_compute():
    class Skip(Callback):
        order = -1
        def before_validate(self): raise __import__('onecycle').CancelValidateException()
    learn = _learner([MulticlassAUROC(num_classes=3)])
    learn.fit(1, cbs=[Skip()])
    v = learn.recorder.epochs[0]['multiclass_auroc']
    assert v != v


# --- accuracy's shapes, accuracy_multi ----------------------------------------------------------------------------
def test_accuracy_agrees_with_scikit_learn_on_class_scores():
    from sklearn.metrics import accuracy_score
    g = torch.Generator().manual_seed(3)
    pred, targ = torch.randn(200, 5, generator=g), torch.randint(0, 5, (200,), generator=g)
    assert accuracy(pred, targ).item() == pytest.approx(accuracy_score(targ.numpy(), pred.argmax(1).numpy()))
    assert error_rate(pred, targ).item() == pytest.approx(1 - accuracy_score(targ.numpy(), pred.argmax(1).numpy()))
    # a sequence of class scores (batch, time, classes) with targets (batch, time)
    seq, seq_targ = torch.randn(4, 7, 3, generator=g), torch.randint(0, 3, (4, 7), generator=g)
    assert accuracy(seq, seq_targ).item() == pytest.approx((seq.argmax(-1) == seq_targ).float().mean().item())


@pytest.mark.parametrize('pred_shape, targ_shape, dtype', [
    ((64, 1), (64, 1), torch.float),   # one logit with BCE's float targets: argmax is always 0
    ((64, 1), (64,), torch.float),
    ((64, 4), (64, 1), torch.long),    # class indices in a column: broadcasts to a 64 x 64 comparison
    ((64,), (64,), torch.long),        # one score per sample
    ((64, 4), (64, 4), torch.float),   # multi-label targets
])
def test_accuracy_refuses_shapes_that_would_give_a_number_that_is_not_an_accuracy(pred_shape, targ_shape, dtype):
    pred = torch.randn(pred_shape)
    targ = torch.randint(0, 2, targ_shape).to(dtype)
    with pytest.raises(ValueError, match=r'accuracy: .*pred \(64.*accuracy_multi'):
        accuracy(pred, targ)
    with pytest.raises(ValueError, match='accuracy_multi'):
        error_rate(pred, targ)


def test_accuracy_multi_agrees_with_torchmetrics_on_one_logit_and_on_multi_label_targets():
    g = torch.Generator().manual_seed(5)
    logit = torch.randn(300, 1, generator=g)
    targ = (logit + torch.randn(300, 1, generator=g) > 0.3).float()
    want = binary_accuracy(logit.sigmoid().squeeze(1), targ.squeeze(1).long()).item()
    assert 0.55 < want < 0.95   # room to be wrong both ways
    assert accuracy_multi(logit, targ).item() == pytest.approx(want)
    assert accuracy_multi(logit, targ.squeeze(1)).item() == pytest.approx(want)   # targets (N,) with logits (N, 1)
    assert accuracy_multi(logit.sigmoid(), targ.bool(), sigmoid=False).item() == pytest.approx(want)
    logits = torch.randn(300, 6, generator=g)
    labels = (logits + torch.randn(300, 6, generator=g) > 0).long()
    for thresh in (0.5, 0.3, 0.8):
        want = multilabel_accuracy(logits.sigmoid(), labels, num_labels=6, threshold=thresh, average='micro').item()
        assert accuracy_multi(logits, labels, thresh=thresh).item() == pytest.approx(want)
    assert accuracy_multi(logits, labels, thresh=0.3).item() != pytest.approx(accuracy_multi(logits, labels).item())


@pytest.mark.parametrize('pred, targ, err, match', [
    (torch.randn(8, 3), torch.randint(0, 3, (8,)), ValueError, r'accuracy_multi: .*\(8, 3\).*\(8,\).*use accuracy'),
    (torch.randn(8, 1), torch.ones(8, 2), ValueError, r'same shape'),
    ([0.5, 0.2], torch.ones(2), TypeError, 'pred and targ must be tensors, got list'),
])
def test_accuracy_multi_refuses_class_index_targets_and_other_shapes(pred, targ, err, match):
    with pytest.raises(err, match=match):
        accuracy_multi(pred, targ)


def test_a_binary_fit_with_one_logit_reports_its_accuracy():
    "BCEWithLogitsLoss on one logit: the column is named accuracy_multi (a partial keeps the name) and is right."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = ((x[:, 0] - x[:, 1] + 0.5 * torch.randn(400, generator=g)) > 0).float()[:, None]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
    train = DataLoader(TensorDataset(x[:300], y[:300]), batch_size=32, shuffle=True)
    valid = DataLoader(TensorDataset(x[300:], y[300:]), batch_size=33)
    learn = Learner(model, (train, valid), nn.BCEWithLogitsLoss(), progress=False, device='cpu',
                    metrics=[accuracy_multi])
    learn.fit(3, lr=0.05)
    with torch.no_grad(): logit = learn.model.eval()(x[300:])
    row = learn.recorder.epochs[-1]
    assert row['accuracy_multi'] == pytest.approx(((logit > 0).float() == y[300:]).float().mean().item(), abs=1e-6)
    assert row['accuracy_multi'] > 0.8   # the fit learned: a column stuck at the share of one class would not be
    # another threshold through functools.partial, under a name of its own
    learn2 = Learner(model, (train, valid), nn.BCEWithLogitsLoss(), progress=False, device='cpu',
                     metrics={'acc_at_0.7': functools.partial(accuracy_multi, thresh=0.7)})
    learn2.fit(1, cbs=[NoTraining()])
    assert learn2.recorder.epochs[-1]['acc_at_0.7'] == pytest.approx(
        ((logit.sigmoid() > 0.7).float() == y[300:]).float().mean().item(), abs=1e-6)


def test_accuracy_leaves_out_targets_equal_to_ignore_index_as_cross_entropy_does():
    """Padding labelled -100 in (batch, time) targets: left out of accuracy as F.cross_entropy leaves it out of the
    loss, the figure torchmetrics gives with the same ignore_index; counted, it would score as a miss. A batch of
    padding alone gives NaN (as the loss does), and ignore_index must be an int."""
    g = torch.Generator().manual_seed(7)
    pred, targ = torch.randn(6, 9, 4, generator=g), torch.randint(0, 4, (6, 9), generator=g)
    targ[:, 6:] = -100
    targ[0, 2:] = -100
    want = multiclass_accuracy(pred.transpose(1, 2), targ, num_classes=4, average='micro', ignore_index=-100).item()
    kept = targ != -100
    assert accuracy(pred, targ, ignore_index=-100).item() == pytest.approx(want)
    assert want == pytest.approx((pred.argmax(-1) == targ)[kept].float().mean().item())
    assert accuracy(pred, targ).item() < want   # padding counted as misses
    assert error_rate(pred, targ, ignore_index=-100).item() == pytest.approx(1 - want)
    assert functools.partial(accuracy, ignore_index=-100)(pred, targ).item() == pytest.approx(want)
    assert metric_name(functools.partial(accuracy, ignore_index=-100)) == 'accuracy'
    assert torch.isnan(accuracy(pred[:1], torch.full((1, 9), -100), ignore_index=-100))
    with pytest.raises(TypeError, match=r'ignore_index must be an int .* got float 0.5'):
        accuracy(pred, targ, ignore_index=0.5)
    with pytest.raises(TypeError, match='ignore_index'):
        accuracy(pred, targ, ignore_index=True)
