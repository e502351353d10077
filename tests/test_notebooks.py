"""The notebooks in nbs/ run from top to bottom without error (their own asserts included), and are
committed with their outputs, so that a reader sees the figures without running anything."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NBS = sorted((Path(__file__).parent.parent / 'nbs').glob('*.ipynb'))
# the figures each notebook draws, at least
MIN_IMAGES = {'00_quickstart': 4, '01_range_test': 3, '02_tune': 1, '03_schedules': 3, '04_discriminative_fine_tune': 2,
              '05_layerwise': 1, '06_checkpoints_resume_divergence': 1, '07_predictions_loggers': 2,
              '08_torchrun': 0}


def _outputs(nb, kind=None):
    return [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])
            if kind is None or o.get('output_type') == kind]


def _images(nb):
    return [o for o in _outputs(nb) if 'image/png' in o.get('data', {})]


@pytest.mark.parametrize('path', NBS, ids=[p.name for p in NBS])
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}).execute()
    assert not _outputs(nb, 'error')
    assert len(_images(nb)) >= MIN_IMAGES.get(path.stem, 1)


@pytest.mark.parametrize('path', NBS, ids=[p.name for p in NBS])
def test_notebook_is_committed_with_small_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert code and all(c.get('execution_count') for c in code)             # executed, every cell
    assert not _outputs(nb, 'error')
    assert len(_images(nb)) >= MIN_IMAGES.get(path.stem, 1)
    assert all(len(o['data']['image/png']) < 200_000 for o in _images(nb))   # low-dpi figures
    assert path.stat().st_size < 400_000


def test_a_notebook_per_topic():
    names = {p.stem for p in NBS}
    assert set(MIN_IMAGES) <= names, set(MIN_IMAGES) - names
