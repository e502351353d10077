"""The lowest layer: events and the training loop, data and hyper-parameter helpers, RNG states and snapshots,
process-group helpers, the recorder and metrics. Imports nothing else from onecycle."""
