"""Smith's recipe: the LR range test and its suggestions, comparisons, momentum and weight-decay
searches, batch-size rules, tune, and loss-curve diagnostics."""
