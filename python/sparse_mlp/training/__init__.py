"""How a model is trained, in one place for every way of training it.

- :mod:`.options`: :class:`FitOptions`, every training setting, validated once;
  ``fit``, ``WASAP.fit``, the command line and the estimator all build one.
- :mod:`.data`: the training data checked against the model, its labels as
  output indices, and its fingerprint.
- :mod:`.loop`: the epoch loop and the scheduler of step strategies' events.
- :mod:`.callbacks`: the hooks at the start and end of training and of each
  epoch (:class:`Callback`), through which progress, metrics files and user
  code run, in the sequential loop and on the WASAP server alike.
- :mod:`.checkpoint`: a run's checkpoint: what it must match to be resumed,
  refusing to replace another run's, writing and resuming it.
- :mod:`.progress`: the progress bar and lines.
"""
