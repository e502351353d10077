"""Batches (core/data.py): splitting into inputs and targets, dict batches called as model(**batch), the
model's own loss (loss_func=None) and logits, batch sizes; a real Hugging Face model fine-tuned end to end."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from onecycle import Callback, Learner, accuracy, split_by_modules
from onecycle.core.data import (FirstLayerInput, batch_loss, batch_size_of, call_model, input_rms, input_squares,
                                output_loss, output_pred, split_batch)


def test_split_batch():
    x, y, z = torch.zeros(3, 2), torch.ones(3), torch.ones(3, 4)
    assert split_batch((x, y)) == ((x,), (y,))
    assert split_batch([x, z, y], 2) == ((x, z), (y,))
    d = {'input_ids': x, 'labels': y}
    xb, yb = split_batch(d)
    assert xb[0] is d and yb[0] is y
    assert split_batch({'input_ids': x}) == (({'input_ids': x},), ())
    xb, yb = split_batch(x)   # a lone tensor is one input, not rows to slice
    assert xb[0] is x and yb == ()


def test_batch_size_of_dict_batches_is_the_first_tensors_length():
    assert batch_size_of(({'ids': torch.zeros(5, 3), 'labels': torch.zeros(5)},)) == 5
    assert batch_size_of({'text': ['a', 'b'], 'scale': torch.tensor(2.), 'ids': torch.zeros(7, 2)}) == 7
    assert batch_size_of(()) == 1 and batch_size_of((torch.zeros(4, 2),)) == 4


def test_input_rms_is_the_root_mean_square_of_the_float_inputs():
    """Every floating-point value of every input counts alike (two tensors: sqrt((4 x 9 + 2 x 36) / 6) = sqrt(18)),
    a dict input's values too; token ids and empty tensors do not, and with nothing else there is no scale (None).
    Half-precision inputs are summed in double: 255s in float16 overflow a float16 sum of squares."""
    three, six = torch.full((2, 2), 3.), torch.full((2,), -6.)
    assert input_rms((three, six)) == pytest.approx(18 ** 0.5)
    assert input_rms(({'pixels': three, 'ids': torch.ones(2, 5, dtype=torch.long), 'mask': torch.ones(2, 5).bool()},)) \
        == pytest.approx(3.)
    assert input_rms((torch.arange(6).view(2, 3),)) is None and input_rms(()) is None
    assert input_rms((torch.zeros(0, 4), six)) == pytest.approx(6.)
    assert input_rms((torch.full((64, 64), 255., dtype=torch.float16, requires_grad=True),)) == pytest.approx(255.)


class Scale(nn.Module):
    "Multiplies its input by `k`: a forward that rescales pixels itself (no weights)."
    def __init__(self, k): super().__init__(); self.k = k

    def forward(self, x): return x * self.k


class TwoInputs(nn.Module):
    "Token ids through an embedding, then raw features beside them, then a linear layer: called as model(ids, x)."
    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(5, 3), nn.Linear(3 + 2, 2)

    def forward(self, ids, x): return self.head(torch.cat([self.embed(ids).mean(1), x], 1))


def test_first_layer_input_reads_what_the_first_weights_receive():
    """The scale the first layer with weights meets, not the batch's: past a forward that divides by 255 and past an
    input BatchNorm (whose own input is not counted); past an embedding of token ids, the layer after it; only on
    the first call, whichever layers run later. remove() takes every hook off; without float inputs nothing is
    recorded."""
    torch.manual_seed(0)
    x = torch.rand(16, 8) * 255
    mlp = lambda *first: nn.Sequential(*first, nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    for model, seen in ((mlp(Scale(1 / 255)), x / 255), (mlp(), x)):
        watch = FirstLayerInput(model)
        model(x)
        assert watch.squares[1] == x.numel() and watch.squares[0] == pytest.approx(input_squares((seen,))[0])
        model(x * 100)   # a later pass changes nothing
        assert watch.squares[0] == pytest.approx(input_squares((seen,))[0])
    bn = mlp(nn.BatchNorm1d(8))
    watch = FirstLayerInput(bn)
    bn(x)
    assert input_squares((x,))[0] / x.numel() > 1e4
    assert watch.squares[0] / watch.squares[1] == pytest.approx(1., rel=1e-3)
    watch.remove()
    assert all(not m._forward_pre_hooks for m in bn.modules())
    ids, feats = torch.randint(0, 5, (4, 6)), torch.full((4, 2), 40.)
    two = TwoInputs()
    watch = FirstLayerInput(two)
    two(ids, feats)
    head_in = torch.cat([two.embed(ids).mean(1), feats], 1)
    assert watch.squares == (pytest.approx(input_squares((head_in,))[0]), head_in.numel())
    bag = nn.Embedding(5, 3)
    watch = FirstLayerInput(bag)
    bag(ids)
    assert watch.squares is None


class Out:
    "An output object with attributes, as Hugging Face's ModelOutput."
    def __init__(self, **kw): self.__dict__.update(kw)


def test_output_pred_and_loss_follow_the_hugging_face_convention():
    logits, loss = torch.randn(3, 2), torch.tensor(0.5)
    assert output_pred(logits) is logits
    assert output_pred({'logits': logits, 'loss': loss}) is logits and output_pred(Out(logits=logits)) is logits
    pair = (logits, loss)
    assert output_pred(pair) is pair and output_pred({'scores': logits})['scores'] is logits
    assert output_loss({'loss': loss}) is loss and output_loss(Out(loss=loss, logits=logits)) is loss
    with pytest.raises(ValueError, match=r'loss_func is None.*tensor of shape \(3, 2\)'): output_loss(logits)
    with pytest.raises(ValueError, match='Out without a loss'): output_loss(Out(logits=logits, loss=None))
    torch.testing.assert_close(batch_loss(nn.CrossEntropyLoss(), {'logits': logits}, (torch.tensor([0, 1, 1]),)),
                               F.cross_entropy(logits, torch.tensor([0, 1, 1])))
    assert batch_loss(None, {'loss': loss, 'logits': logits}, ()) is loss


class DictData(Dataset):
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return {'x': self.x[i], 'labels': self.y[i]}


class DictModel(nn.Module):
    "model(**batch) -> {'loss', 'logits'}; the loss only when given labels."
    def __init__(self, n_in=8):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head = nn.Linear(n_in, 16), nn.Linear(16, 2)

    def forward(self, x, labels=None):
        logits = self.head(self.body(x).relu())
        return {'logits': logits, **({'loss': F.cross_entropy(logits, labels)} if labels is not None else {})}


def _dict_dls(make_dls):
    train, valid = make_dls()
    return tuple(DataLoader(DictData(*dl.dataset.tensors), batch_size=dl.batch_size) for dl in (train, valid))


def test_dict_batches_train_with_the_models_own_loss_and_callbacks_see_logits_and_labels(make_dls):
    seen = {}

    class Probe(Callback):
        def after_loss(self):
            seen.update(pred=self.pred, yb=self.yb, xb=self.xb, bs=self.batch_size, loss=self.loss)
    learn = Learner(DictModel(), _dict_dls(make_dls), None, metrics=[accuracy], device='cpu', progress=False,
                    cbs=[Probe()])
    learn.fit(3, lr=0.05)
    assert seen['pred'].shape == (32, 2) and seen['bs'] == 32   # the last batch, a validation one
    assert torch.equal(seen['yb'][0], seen['xb'][0]['labels'])
    assert seen['loss'].item() == pytest.approx(F.cross_entropy(seen['pred'], seen['yb'][0]).item())
    ep = learn.recorder.epochs
    assert ep[-1]['valid_loss'] < ep[0]['valid_loss'] and ep[-1]['accuracy'] > 0.8
    assert len(learn.recorder.losses) == 3 * 4


def test_dict_batches_with_a_loss_func_use_the_logits(make_dls):
    learn = Learner(DictModel(), _dict_dls(make_dls), nn.CrossEntropyLoss(), device='cpu', progress=False)
    x, y = make_dls()[1].dataset.tensors
    with torch.no_grad(): expected = F.cross_entropy(learn.model(x)['logits'], y).item()
    assert learn.validate()['valid_loss'] == pytest.approx(expected, rel=1e-6)


def test_loss_func_none_with_a_model_that_returns_no_loss_is_a_clear_error(make_model, make_dls):
    learn = Learner(make_model(), make_dls(), None, device='cpu', progress=False)
    w = learn.model[0].weight.clone()
    with pytest.raises(ValueError, match='loss_func is None.*tensor of shape'): learn.fit(1, lr=0.1)
    assert torch.equal(learn.model[0].weight, w)
    # with a loss_func, the same model and tuple batches train as before
    Learner(make_model(), make_dls(), nn.CrossEntropyLoss(), device='cpu', progress=False).fit(1, lr=0.1)


def test_lr_find_and_call_model_with_dict_batches(make_dls):
    learn = Learner(DictModel(), _dict_dls(make_dls), None, device='cpu', progress=False)
    res = learn.lr_find(num_it=10, valid_every=2, valid_batches=1)
    assert len(res.lrs) > 3
    out = call_model(learn.model, ({'x': torch.zeros(2, 8)},))
    assert set(out) == {'logits'}


# --- a real Hugging Face model, built from a tiny config (no download) ------------------------------------
def _tiny_bert():
    transformers = pytest.importorskip('transformers')
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16, num_labels=2,
                                  hidden_dropout_prob=0., attention_probs_dropout_prob=0.)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg)


class TokenData(Dataset):
    "Sequences of 8 tokens; the label says whether token 7 occurs in it (about half of them)."
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(10, 100, (n, 8), generator=g)
        has = torch.rand(n, generator=g) < 0.5
        self.ids[has, torch.randint(0, 8, (int(has.sum()),), generator=g)] = 7
        self.labels = (self.ids == 7).any(1).long()
    def __len__(self): return len(self.ids)
    def __getitem__(self, i):
        return {'input_ids': self.ids[i], 'attention_mask': torch.ones(8, dtype=torch.long), 'labels': self.labels[i]}


def test_a_hugging_face_model_fine_tunes_with_one_cycle_and_discriminative_lrs():
    model = _tiny_bert()
    dls = (DataLoader(TokenData(256, 0), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)),
           DataLoader(TokenData(128, 1), batch_size=64))
    splitter = split_by_modules('bert.embeddings', 'bert.encoder', ['bert.pooler', 'classifier'])
    learn = Learner(model, dls, metrics=[accuracy], splitter=splitter, device='cpu', progress=False)
    before = learn.validate()
    learn.fit_one_cycle(6, max_lr=slice(1e-3, 1e-2))
    after = learn.recorder.epochs[-1]
    lrs = [pg['lr'] for pg in learn.opt.param_groups]
    assert len(lrs) == 3 and lrs[0] < lrs[1] < lrs[2]
    peak = [max(v) for v in zip(*learn.recorder.hps['lr'])]
    assert peak[0] == pytest.approx(1e-3, rel=1e-3) and peak[2] == pytest.approx(1e-2, rel=1e-3)
    assert after['valid_loss'] < 0.5 * before['valid_loss'] and after['accuracy'] > 0.9
    preds, targs = learn.get_preds(act=lambda p: p.softmax(-1))
    assert preds.shape == (128, 2) and torch.equal(targs, dls[1].dataset.labels)
    assert (preds.argmax(-1) == targs).float().mean().item() == pytest.approx(after['accuracy'])
    one = learn.predict({'input_ids': dls[1].dataset.ids[:3]})
    torch.testing.assert_close(one.softmax(-1), preds[:3], atol=1e-5, rtol=1e-4)
