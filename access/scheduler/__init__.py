"""The reaper, the reconciler and the in-process clock that drives them."""
