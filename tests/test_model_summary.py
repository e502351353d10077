"""learn.summary(): layers in call order with output shapes and parameter counts, trainable and frozen;
torchinfo's table when installed; the model's mode, statistics and hooks left as they were."""
import importlib.util

import pytest
import torch
from torch import nn

from onecycle import Learner, split_by_children
from onecycle.model_summary import ModelSummary


class Shared(nn.Module):
    "One layer used twice, a frozen buffer-only layer, and a layer the forward never runs."
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.unused = nn.Linear(8, 100)
        self.head = nn.Linear(8, 2)

    def forward(self, x): return self.head(self.bn(self.lin(self.lin(x))).relu())


def test_own_table_lists_layers_in_call_order_with_shapes_and_counts(make_learner):
    model = Shared()
    learn = make_learner(model=model)
    learn.model.train()
    stats = model.bn.running_mean.clone()
    s = learn.summary(use_torchinfo=False)
    assert isinstance(s, ModelSummary)
    assert [(r['name'], r['output_shape'], r['params']) for r in s.rows] == [
        ('lin', '[16, 8]', 72), ('lin', '[16, 8]', 0), ('bn', '[16, 8]', 16), ('head', '[16, 2]', 18)]
    assert s.total_params == 72 + 16 + 900 + 18 and s.trainable_params == s.total_params and s.frozen_params == 0
    assert model.training and torch.equal(model.bn.running_mean, stats)   # ran in eval mode
    assert not any(m._forward_hooks for m in model.modules())
    text = str(s)
    assert 'head (Linear)' in text and 'Total params: 1,006' in text and 'Frozen params: 0' in text
    assert s.input_shapes == '[16, 8]'   # the first training batch


def test_frozen_layers_and_a_given_batch(make_learner, make_model):
    learn = make_learner(model=make_model(bn=True), splitter=split_by_children(2))
    learn.freeze()
    s = learn.summary(torch.randn(5, 8), use_torchinfo=False)
    first = s.rows[0]
    assert first['trainable'] is False and first['output_shape'] == '[5, 16]' and s.input_shapes == '[5, 8]'
    frozen = sum(p.numel() for p in learn.model.parameters() if not p.requires_grad)
    assert s.frozen_params == frozen == 8 * 16 + 16 and s.trainable_params == s.total_params - frozen
    assert 'no (frozen)' in str(s)


def test_a_hugging_face_model_from_a_dict_batch():
    transformers = pytest.importorskip('transformers')
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16, num_labels=3)
    model = transformers.BertForSequenceClassification(cfg)
    batch = {'input_ids': torch.randint(0, 100, (4, 6)), 'labels': torch.tensor([0, 1, 2, 0])}
    learn = Learner(model, ([batch], [batch]), device='cpu', progress=False)
    s = learn.summary(use_torchinfo=False)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.rows[-1]['name'] == 'classifier' and s.rows[-1]['output_shape'] == '[4, 3]'
    assert 'logits: [4, 3]' in s.footer[0] and "model's own" in s.footer[1]


def test_torchinfo_when_installed(make_learner, make_model):
    pytest.importorskip('torchinfo')
    learn = make_learner(model=make_model(bn=True), splitter=split_by_children(2))
    learn.freeze()
    learn.model.train()
    s = learn.summary()
    assert s.total_params == sum(p.numel() for p in learn.model.parameters())
    assert s.trainable_params == s.total_params - (8 * 16 + 16)
    assert learn.model.training and 'BatchNorm1d' in str(s)


def test_arguments(make_learner, monkeypatch):
    learn = make_learner()
    with pytest.raises(TypeError, match='use_torchinfo'): learn.summary(use_torchinfo='yes')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'torchinfo' else real(name, *a))
    with pytest.raises(ImportError, match='pip install torchinfo'): learn.summary(use_torchinfo=True)
    assert isinstance(learn.summary(), ModelSummary)   # without torchinfo: the own table
