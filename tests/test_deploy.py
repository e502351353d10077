"""learn.export: a torch.export program that a new python process, without onecycle or the model's class,
loads and runs to the same outputs; any batch size; clear errors for models torch.export cannot capture."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from onecycle import ExportError, Learner, load_exported

# Runs in a fresh interpreter (-I: no PYTHONPATH, no current folder on the path), with plain torch only:
# loads each exported program and runs it on its inputs.
LOADER = '''
import sys, torch
for path, inputs, out in zip(*[iter(sys.argv[1:])] * 3):
    m = torch.export.load(path).module()
    x = torch.load(inputs, weights_only=True)
    with torch.no_grad(): y = m(**x) if isinstance(x, dict) else m(x)
    torch.save(y, out)
assert not any(n == 'onecycle' or n.startswith('onecycle.') for n in sys.modules), 'onecycle was imported'
assert 'test_deploy' not in sys.modules and 'transformers' not in sys.modules
'''


class Net(nn.Module):
    "Defined here only: the loading process cannot import it. Dropout and batch norm: eval mode must be exported."
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(16, 2)

    def forward(self, x): return self.head(self.body(x))


def _tiny_bert():
    import transformers
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Exports a trained Net and (with transformers) a tiny BERT, runs both in ONE new process (starting
    one costs seconds); returns {name: (learner, path, inputs, expected, got elsewhere)}."""
    from torch.utils.data import DataLoader, TensorDataset
    tmp = tmp_path_factory.mktemp('export')
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    dl = DataLoader(TensorDataset(x, y), batch_size=32)
    learn = Learner(Net(), (dl, dl), nn.CrossEntropyLoss(), device='cpu', progress=False)
    learn.fit(1, lr=0.05)
    learn.model.train()
    cases = {'net': (learn, learn.export(tmp / 'net.pt2'), torch.randn(5, 8))}   # not the traced batch size, 32
    assert learn.model.training   # the mode is put back
    try: model = _tiny_bert()
    except ImportError: model = None
    if model is not None:
        batch = {'input_ids': torch.randint(0, 100, (4, 6)), 'attention_mask': torch.ones(4, 6, dtype=torch.long),
                 'labels': torch.tensor([0, 1, 2, 0])}
        hf = Learner(model, ([batch], [batch]), device='cpu', progress=False)
        xs = {'input_ids': torch.randint(0, 100, (3, 6)), 'attention_mask': torch.ones(3, 6, dtype=torch.long)}
        xs['attention_mask'][0, 4:] = 0
        cases['bert'] = (hf, hf.export(tmp / 'bert.pt2'), xs)
    args = []
    for name, (_, path, inputs) in cases.items():
        torch.save(inputs, tmp / f'{name}.in.pt')
        args += [str(path), str(tmp / f'{name}.in.pt'), str(tmp / f'{name}.out.pt')]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    p = subprocess.run([sys.executable, '-I', '-c', LOADER, *args], env=env, cwd=tmp, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = {}
    for name, (lrn, path, inputs) in cases.items():
        lrn.model.eval()
        with torch.no_grad(): expected = lrn.model(**inputs).logits if name == 'bert' else lrn.model(inputs)
        out[name] = (lrn, path, inputs, expected, torch.load(tmp / f'{name}.out.pt', weights_only=True))
    return out


def test_export_loads_in_a_new_process_without_onecycle_or_the_model_code(exported):
    learn, path, x, expected, got = exported['net']
    assert path.name == 'net.pt2' and sorted(p.name for p in path.parent.glob('net*')) == ['net.in.pt', 'net.out.pt',
                                                                                         'net.pt2']   # no temp file
    torch.testing.assert_close(got, expected)
    with torch.no_grad(): torch.testing.assert_close(load_exported(path)(x), expected)


def test_a_hugging_face_model_exports_its_logits_from_keyword_inputs(exported):
    if 'bert' not in exported: pytest.skip('needs transformers')
    *_, expected, got = exported['bert']
    torch.testing.assert_close(got, expected)


def test_a_fixed_batch_size_when_asked(make_learner, tmp_path):
    learn = make_learner()
    path = learn.export(tmp_path / 'm.pt2', batch=(torch.randn(4, 8), torch.zeros(4)), dynamic_batch=False)
    m = load_exported(path)
    assert m(torch.randn(4, 8)).shape == (4, 2)
    with pytest.raises(Exception): m(torch.randn(5, 8))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__(); self.lin = nn.Linear(8, 2)

    def forward(self, x):
        if x.sum() > 0: return self.lin(x)   # Python control flow on a tensor's value
        return -self.lin(x)


def test_a_model_that_cannot_be_exported_says_so_and_writes_nothing(make_learner, tmp_path):
    learn = make_learner(model=DataDependent())
    learn.model.train()
    with pytest.raises(ExportError, match='DataDependent cannot be exported with torch.export.*state_dict'):
        learn.export(tmp_path / 'bad.pt2')
    assert not list(tmp_path.iterdir()) and learn.model.training


def test_arguments(make_learner, tmp_path):
    learn = make_learner()
    with pytest.raises(TypeError, match='path'): learn.export(3)
    with pytest.raises(TypeError, match='dynamic_batch'): learn.export(tmp_path / 'm.pt2', dynamic_batch='no')
    with pytest.raises(FileNotFoundError, match='folder'): learn.export(tmp_path / 'missing' / 'm.pt2')
    with pytest.raises(TypeError, match='path'): load_exported(None)
    assert not list(tmp_path.iterdir())
