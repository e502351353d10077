"""torchmetrics, EarlyStopping, SaveModel(load_best=True) and CSVLogger on two processes
(``torch.distributed.run``, gloo, CPU), running tests/metrics_ddp_script.py once."""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip('torchmetrics')
import ddp_script  # noqa: E402
from torchmetrics.functional.classification import multiclass_auroc, multiclass_f1_score  # noqa: E402

REPO = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('metrics_ddp')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': REPO + os.pathsep + os.path.join(REPO, 'tests')}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
           f'--master_port={_free_port()}', os.path.join(REPO, 'tests', 'metrics_ddp_script.py'), str(out)]
    p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, [torch.load(out / f'rank{r}.pt', weights_only=False) for r in range(2)]


def test_torchmetrics_over_two_ranks_equal_one_process(run):
    _, ranks = run
    assert sorted(r['valid_share'] for r in ranks) == [10, 11]   # unequal shares of the 21 samples
    _, valid = ddp_script.make_data()
    x, y = valid.tensors
    with torch.no_grad(): pred = ddp_script.make_model(ddp_script.MODEL_SEED).eval()(x)
    want = {'f1': multiclass_f1_score(pred, y, 2, average='macro').item(), 'auroc': multiclass_auroc(pred, y, 2).item(),
            'accuracy': (pred.argmax(1) == y).float().mean().item()}
    for r in ranks:
        for k, v in want.items(): assert r['metrics'][k] == pytest.approx(v, abs=1e-6), k
    # one rank's share alone gives another F1: the sync is what makes them equal
    mine = ddp_script.make_dls()[1].dataset.tensors
    assert multiclass_f1_score(pred[0::2], mine[1][0::2], 2, average='macro').item() != pytest.approx(want['f1'])


def test_early_stopping_load_best_and_csv_on_two_ranks(run):
    out, ranks = run
    for r in ranks:
        assert r['stopped'] == 4 and r['epochs'] == [0, 1, 2, 3, 4]
        assert all(torch.equal(v, r['weights_seen'][2][k]) for k, v in r['final'].items())   # the best epoch's
    assert all(torch.equal(v, ranks[1]['final'][k]) for k, v in ranks[0]['final'].items())
    with open(out / 'history.csv', newline='') as f: rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ['epoch', '0', '1', '2', '3', '4']   # rank 0 alone wrote it
    assert sorted(p.name for p in (out / 'ck').iterdir()) == ['model_best.pt', 'model_last.pt']
