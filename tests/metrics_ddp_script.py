"""Run by tests/distributed/test_metrics_ddp.py under
``python -m torch.distributed.run --nproc_per_node=2 tests/metrics_ddp_script.py OUT_DIR``.

Each rank validates with torchmetrics metrics (the ranks see unequal shares of the validation set),
then trains with EarlyStopping, SaveModel(load_best=True) and CSVLogger, and saves what it saw to
OUT_DIR/rank{R}.pt."""
import sys

import torch
from torch import nn

import ddp_script
from helpers import ScriptedMetric

torch.set_num_threads(1)
SCRIPTED = [3., 2., 1., 2.5, 2.6, 2.7, 0., 0.]   # the monitored value per epoch: best at 2, stop after 4 (patience 2)


def main(out_dir):
    from torchmetrics.classification import MulticlassAUROC, MulticlassF1Score

    from onecycle import (Callback, CancelTrainException, CSVLogger, EarlyStopping, Learner, SaveModel, accuracy,
                          rank)

    class NoTraining(Callback):
        def before_train(self): raise CancelTrainException()

    class Weights(Callback):
        order = 90
        def __init__(self): self.seen = []
        def after_epoch(self): self.seen.append({k: v.clone() for k, v in self.learn.model.state_dict().items()})

    seen = {}
    metrics = {'f1': MulticlassF1Score(num_classes=2, average='macro'), 'auroc': MulticlassAUROC(num_classes=2),
               'accuracy': accuracy}
    learn = Learner(ddp_script.make_model(ddp_script.MODEL_SEED), ddp_script.make_dls(), nn.CrossEntropyLoss(),
                    metrics=metrics, progress=False, device='cpu')
    learn.fit(1, cbs=[NoTraining()])
    seen['metrics'] = dict(learn.recorder.epochs[0])
    seen['valid_share'] = len(learn.dls.valid.sampler)

    s = ScriptedMetric(SCRIPTED)
    learn = Learner(ddp_script.make_model(ddp_script.MODEL_SEED), ddp_script.make_dls(), nn.CrossEntropyLoss(),
                    metrics={'score': s}, progress=False, device='cpu', opt_func=torch.optim.SGD)
    s.learn = learn
    w = Weights()
    es = EarlyStopping('score', mode='min', patience=2, start_after=0, verbose=False)
    learn.fit(8, 0.1, cbs=[es, SaveModel(f'{out_dir}/ck', 'score', mode='min', load_best=True),
                           CSVLogger(f'{out_dir}/history.csv'), w])
    seen.update(stopped=es.stopped_epoch, epochs=[r['epoch'] for r in learn.recorder.epochs],
                weights_seen=w.seen, final={k: v.clone() for k, v in learn.model.state_dict().items()})
    torch.save(seen, f'{out_dir}/rank{rank()}.pt')


if __name__ == '__main__':
    main(sys.argv[1])
