"""get_preds and dict batches on two processes; run by tests/callbacks/test_predict.py under
``python -m torch.distributed.run --nproc_per_node=2 tests/predict_script.py OUT_DIR``.
Each rank saves what it got to OUT_DIR/rank{R}.pt; the test compares it with the whole validation set."""
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from helpers import two_class_arrays

torch.set_num_threads(1)

N_TRAIN, N_VALID, N_IN = 32, 21, 8   # 21: the ranks' validation shares differ in length


def make_data():
    return two_class_arrays(N_TRAIN, N_VALID, N_IN)


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), nn.Linear(16, 2))


class DictData(Dataset):
    "Items as dicts, the way Hugging Face datasets give them."
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return {'x': self.x[i], 'labels': self.y[i]}


class DictModel(nn.Module):
    "Called as model(**batch); returns its own loss and logits, as Hugging Face models do."
    def __init__(self):
        super().__init__()
        self.net = make_model()

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {'logits': logits, **({'loss': F.cross_entropy(logits, labels)} if labels is not None else {})}


def main(out_dir):
    from onecycle import Learner, rank
    xt, yt, xv, yv = make_data()
    dls = (DataLoader(TensorDataset(xt, yt), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1)),
           DataLoader(TensorDataset(xv, yv), batch_size=4))
    learn = Learner(make_model(), dls, nn.CrossEntropyLoss(), device='cpu', progress=False)
    learn.fit(1, lr=0.05)
    out = {'sampler': type(learn.dls.valid.sampler).__name__, 'state': learn.model.state_dict()}
    out['tuple'] = learn.get_preds(with_input=True, with_loss=True)
    padded = DataLoader(TensorDataset(xv, yv), batch_size=3,
                        sampler=DistributedSampler(TensorDataset(xv, yv), shuffle=True, seed=3))
    out['padded'] = learn.get_preds(padded, with_input=True)

    ddls = (DataLoader(DictData(xt, yt), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1)),
            DataLoader(DictData(xv, yv), batch_size=4))
    hf = Learner(DictModel(), ddls, None, device='cpu', progress=False)
    hf.fit(2, lr=0.05)
    out['dict'] = hf.get_preds(with_input=True)
    out['dict_state'] = hf.model.state_dict()
    out['dict_losses'] = hf.recorder.losses
    out['dict_valid'] = hf.recorder.epochs[-1]['valid_loss']
    torch.save(out, f'{out_dir}/rank{rank()}.pt')


if __name__ == '__main__':
    main(sys.argv[1])
