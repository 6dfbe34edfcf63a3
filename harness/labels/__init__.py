"""Sound to pseudo-labels: sound feature matrices, the labels on disk and their diagnostics."""
