"""The evaluation machinery every method shares, one room per step of the data flow (imports run
down this list only; tests/test_architecture.py holds it):

- ``core``: errors, atomic writes, plugin loading, declared options, the distributed world
- ``data``: the survey, its loaders (a registry), the evaluation protocols and splits, pseudonyms
- ``personas``: collaborative filtering, persona spaces, the persona analysis
- ``metrics``: the metric registry (per-person scores, bootstrap CIs, paired tests), group figures
- ``scoring``: models, steering, saved steering modules, the lm-eval models and evaluation
- ``runs``: a run's configuration, its typed record, the runs folder, presets
- ``method``: the Method interface, its registry, and the leak-proof RunContext a method sees
- ``training``: the shared trainer, learned steering methods, the membership audit
- ``runner`` (one run: :func:`~persona_bench.harness.runner.evaluate`), ``plan`` (cost plans)
  and ``conformance`` (the method conformance suite): the pipeline itself.
"""
