"""The notebooks in nbs/ run from top to bottom without error (their own asserts included)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NBS = sorted((Path(__file__).parent.parent / 'nbs').glob('*.ipynb'))


@pytest.mark.parametrize('path', NBS, ids=[p.name for p in NBS])
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == 'code'
              for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors
    images = [o for c in nb.cells if c.cell_type == 'code'
              for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
    assert len(images) >= 3   # range test, losses and schedule plots were drawn


def test_quickstart_exists():
    assert any(p.name == '00_quickstart.ipynb' for p in NBS)
