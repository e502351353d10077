"""torchmetrics, EarlyStopping, SaveModel(load_best=True) and CSVLogger on two processes
(``torch.distributed.run``, gloo, CPU), running tests/metrics_ddp_script.py once."""
import csv

import pytest
import torch

pytest.importorskip('torchmetrics')
import ddp_script  # noqa: E402
from launch import rank_results, torchrun  # noqa: E402
from torchmetrics.functional.classification import multiclass_auroc, multiclass_f1_score  # noqa: E402


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('metrics_ddp')
    torchrun('metrics_ddp_script.py', out)
    return out, rank_results(out)


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
