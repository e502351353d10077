"""Callbacks that change how a step is taken: accumulation, mixed precision, clipping, divergence guard,
progress, GPU layout, layer-wise lrs, discriminative lrs and freezing. Built on core only."""
