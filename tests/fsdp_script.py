"""Trains tiny models fully sharded (FSDP2, gloo, CPU); run by tests/distributed/test_fsdp.py under
``python -m torch.distributed.run --nproc_per_node=2 tests/fsdp_script.py OUT_DIR [full|nodes]``.

The training code is what one would write for one process plus ``cbs=[FSDP()]``. Each rank saves
what it saw to OUT_DIR/rank{R}.pt (gathered, full weights) and the test compares the ranks with each
other and with one process training on the same global batches. 'nodes' runs the short check that
the multi-node launch (two torchrun agents, --nnodes=2) makes.
"""
import contextlib
import io
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import ScriptedMetric, two_class_arrays

torch.set_num_threads(1)

N_TRAIN, N_VALID, N_IN, BS, SHUFFLE_SEED, MODEL_SEED = 64, 9, 8, 8, 7, 100
MAX_LR, WD, CLIP = 0.5, 1e-2, 1.0


class Net(nn.Module):
    "Blocks in a ModuleList (the default policy shards each), a LayerNorm (no decay) and a head."
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU()),
                                     nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU())])
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        for b in self.blocks: x = b(x)
        return self.head(x)


def make_data():
    "A two-class problem, the same on every rank (N_VALID=9 in batches of 4: shares of 2 and 1 batches)."
    x, y, xv, yv = two_class_arrays(N_TRAIN, N_VALID, N_IN)
    return TensorDataset(x, y), TensorDataset(xv, yv)


def make_model(seed=MODEL_SEED):
    torch.manual_seed(seed)
    return Net()


def splitter(m):
    return [list(m.blocks.parameters()), list(m.head.parameters())]


def make_dls(bs=BS):
    train, valid = make_data()
    return (DataLoader(train, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(SHUFFLE_SEED)),
            DataLoader(valid, batch_size=4))


def learner_kwargs():
    from onecycle.core.metrics import accuracy
    from functools import partial
    return dict(loss_func=nn.CrossEntropyLoss(), opt_func=partial(torch.optim.SGD, momentum=0.9), metrics=[accuracy],
                device='cpu', splitter=splitter)


def one_cycle(learn, n=2, extra=(), **kw):
    from onecycle import GradientClipping
    learn.fit_one_cycle(n, max_lr=slice(MAX_LR / 10, MAX_LR), wd=WD, callbacks=[GradientClipping(CLIP), *extra], **kw)


def _local(model):
    "This rank's shards and buffers, cloned."
    return {k: (v.to_local() if hasattr(v, 'to_local') else v).detach().clone() for k, v in model.state_dict().items()}


def _opt_local(opt):
    return {(i, k): (v.to_local() if hasattr(v, 'to_local') else v).detach().clone()
            for i, (p, s) in enumerate(opt.state.items()) for k, v in s.items() if isinstance(v, torch.Tensor)}


SCORES = [3., 1., 2.]   # the monitored value per epoch: the best is epoch 1, not the last


def save_model_runs(out_dir):
    "SaveModel(every_n_batches=3, load_best=True) with FSDP and GradAccumulation(2): whole, interrupted, resumed."
    import warnings
    from onecycle import FSDP, Learner, SaveModel, full_state_dict
    from onecycle.core.callback import Callback, CancelFitException
    from onecycle.callbacks.training import GradAccumulation
    from onecycle.distributed.sharded import is_sharded_checkpoint, read_sharded_rest

    class Watch(Callback):
        "After SaveModel: where its last checkpoint stands after each training batch; the weights at each epoch's end."
        order = 75
        def __init__(self, saver): self.saver, self.saves, self.weights = saver, [], {}

        def after_batch(self):
            p = self.saver.last_path
            if not self.learn.training or not is_sharded_checkpoint(p): return
            fit = read_sharded_rest(p)['fit']
            at = (fit['epochs_done'], fit['batches_done'])
            if not self.saves or self.saves[-1] != at: self.saves.append(at)

        def after_epoch(self): self.weights[self.learn.epoch] = full_state_dict(self.learn.model)

    class StopAt(Callback):
        order = 80
        def __init__(self): self.warned = None

        def after_batch(self):   # inside the accumulation group of batches 7-8 of epoch 1
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 6:
                with warnings.catch_warnings(record=True) as w:   # a save of your own here cannot hold the gradients
                    warnings.simplefilter('always')
                    self.learn.save(os.path.join(out_dir, 'sm_mid_group'))
                self.warned = [str(x.message) for x in w]
                raise CancelFitException()

    def run(dirname, extra=(), resume=None):
        s = ScriptedMetric(SCORES)
        learn = Learner(make_model(MODEL_SEED), make_dls(bs=4), cbs=[FSDP(), GradAccumulation(2)], progress=False,
                        **{**learner_kwargs(), 'metrics': {'score': s}})
        s.learn = learn
        saver = SaveModel(os.path.join(out_dir, dirname), 'score', mode='min', every_n_batches=3, load_best=True)
        watch = Watch(saver)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            one_cycle(learn, 3, extra=[saver, watch, *extra], resume=resume)
        return learn, saver, watch, [str(x.message) for x in w if 'accumulation' in str(x.message)]

    out = {}
    learn, saver, watch, warned = run('sm_whole')
    out['whole'] = {'final': full_state_dict(learn.model), 'weights': watch.weights, 'saves': watch.saves,
                    'losses': learn.recorder.losses, 'hps': learn.recorder.hps, 'warned': warned,
                    'best': (saver.best, saver.best_epoch), 'paths': (saver.last_path.name, saver.best_path.name),
                    'files': sorted(os.listdir(saver.dirname)), 'last_files': sorted(os.listdir(saver.last_path)),
                    'last_fit': read_sharded_rest(saver.last_path)['fit']}
    stop = StopAt()
    learn, saver, watch, _ = run('sm_part', extra=[stop])
    out['interrupted'] = {'saves': watch.saves, 'steps': learn.step_count, 'mid_group_save_warned': stop.warned}
    learn, saver, watch, warned = run('sm_part', resume=saver.last_path)
    out['resumed'] = {'final': full_state_dict(learn.model), 'weights': watch.weights, 'losses': learn.recorder.losses,
                      'hps': learn.recorder.hps, 'best': (saver.best, saver.best_epoch), 'warned': warned}
    return out


def main(out_dir, mode):
    from onecycle import FSDP, Learner, full_state_dict
    from onecycle.core.callback import Callback, CancelFitException
    from onecycle.callbacks.training import GradAccumulation
    from onecycle.core.hyper import weight_scale
    from onecycle.distributed import rank, world_size

    res, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        if mode == 'nodes':
            learn = Learner(make_model(), make_dls(), cbs=[FSDP()], progress=False, **learner_kwargs())
            one_cycle(learn)
            res['fit'] = {'full': full_state_dict(learn.model), 'losses': learn.recorder.losses}
        else:
            # 1. fit_one_cycle, two param groups (discriminative lrs), decoupled wd, clipping; ranks start apart.
            class Probe(Callback):
                order = 100
                def __init__(self): self.seen = {}

                def after_batch(self):
                    if self.learn.training and 'train_type' not in self.seen:
                        m = self.learn.model
                        self.seen.update(train_type=type(m).__name__,
                                         param_types=sorted({type(p).__name__ for p in m.parameters()}),
                                         opt_types=sorted({type(p).__name__ for pg in self.learn.opt.param_groups
                                                           for p in pg['params']}),
                                         n_groups=len(self.learn.opt.param_groups),
                                         lrs=[pg['lr'] for pg in self.learn.opt.param_groups])
            probe = Probe()
            learn = Learner(make_model(MODEL_SEED + rank()), make_dls(), cbs=[FSDP()], progress=True,
                            **learner_kwargs())
            res['cbs'] = [type(c).__name__ for c in learn.cbs]
            res['wd_before_fit'] = [pg.get('wd') for pg in learn.opt.param_groups]
            one_cycle(learn, extra=[probe])
            res['fit'] = {'full': full_state_dict(learn.model), 'hps': learn.recorder.hps,
                          'losses': learn.recorder.losses, 'probe': probe.seen,
                          'epochs': [{k: v for k, v in e.items() if k != 'time'} for e in learn.recorder.epochs],
                          'validate': learn.validate(), 'local': _local(learn.model)}

            # 2. The LR range test (and tune's trials) put the shards and the optimizer state back bitwise.
            before, opt_before = _local(learn.model), _opt_local(learn.opt)
            r = learn.lr_find(start_lr=1e-3, end_lr=1e4, num_it=30)
            res['lr_find'] = {'lrs': r.lrs, 'losses': r.train_losses, 'stopped_early': r.stopped_early,
                              'before': before, 'after': _local(learn.model), 'opt_before': opt_before,
                              'opt_after': _opt_local(learn.opt), 'held': r.held, 'suggestion': r.suggestion,
                              'weight_scale': weight_scale(learn.model)}   # the shards' squares summed over ranks
            r = learn.lr_find(start_lr=1e-3, end_lr=1., num_it=6, valid_every=2)
            res['lr_find_valid'] = {'valid_losses': r.losses, 'after': _local(learn.model)}

            # 3. Accumulation: no gradient reduction (no sharded .grad) on the batches that do not step.
            class GradSeen(Callback):
                order = 100
                def __init__(self): self.seen = []
                def after_backward(self):
                    self.seen.append((self.learn.is_step_batch,
                                      all(p.grad is not None for p in self.learn.model.parameters())))
            seen = GradSeen()
            learn = Learner(make_model(MODEL_SEED + rank()), make_dls(bs=4), cbs=[FSDP(), GradAccumulation(2)],
                            progress=False, **learner_kwargs())
            learn.fit(1, lr=0.3, cbs=[seen])
            res['accum'] = {'full': full_state_dict(learn.model), 'seen': seen.seen, 'steps': learn.step_count}

            # 4. Save mid-epoch on 2 ranks, stop, resume in a new learner: as if never interrupted.
            ck = os.path.join(out_dir, 'ck')

            class SaveAndStop(Callback):
                order = 80
                def after_batch(self):
                    if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 1:
                        self.learn.save(ck)
                        raise CancelFitException()
            learn = Learner(make_model(MODEL_SEED), make_dls(), cbs=[FSDP()], progress=False, **learner_kwargs())
            one_cycle(learn, extra=[SaveAndStop()])
            res['interrupted'] = {'steps': learn.step_count, 'files': sorted(os.listdir(ck))}
            resumed = Learner(make_model(MODEL_SEED + 1), make_dls(), cbs=[FSDP()], progress=False,
                              **learner_kwargs())
            one_cycle(resumed, resume=ck)
            res['resumed'] = {'full': full_state_dict(resumed.model), 'losses': resumed.recorder.losses,
                              'hps': resumed.recorder.hps, 'steps': resumed.step_count}
            whole = Learner(make_model(MODEL_SEED), make_dls(), cbs=[FSDP()], progress=False, **learner_kwargs())
            one_cycle(whole)
            res['whole'] = {'full': full_state_dict(whole.model), 'losses': whole.recorder.losses,
                            'hps': whole.recorder.hps}
            # a checkpoint saved after the fit, loaded into another sharded learner: same weights, same optimizer
            end = os.path.join(out_dir, 'end')
            whole.save(end)
            other = Learner(make_model(MODEL_SEED + 5), make_dls(), cbs=[FSDP()], progress=False, **learner_kwargs())
            other.load(end)
            res['reloaded'] = {'local': _local(other.model), 'opt': _opt_local(other.opt),
                               'want_local': _local(whole.model), 'want_opt': _opt_local(whole.opt)}

            # 5. SaveModel: sharded checkpoints; a mid-epoch save inside an accumulation group waits for its step;
            #    load_best puts the best epoch's weights back; a resume from the last checkpoint is exact.
            res['save_model'] = save_model_runs(out_dir)
    res['stdout'] = out.getvalue()
    res['rank'], res['world_size'] = rank(), world_size()
    torch.save(res, os.path.join(out_dir, f'rank{rank()}.pt'))


if __name__ == '__main__':
    if os.environ.get('FSDP_SCRIPT_DEBUG'):
        import faulthandler
        faulthandler.dump_traceback_later(int(os.environ['FSDP_SCRIPT_DEBUG']), exit=True)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else 'full')
