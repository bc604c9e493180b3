"""Experiments: runnable studies built on the optimisers and the energy tracker."""
