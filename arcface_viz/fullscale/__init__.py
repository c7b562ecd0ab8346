"""The full-scale face-recognition backend: a closed group the lessons never import.  One job per module.

Training (``python -m arcface_viz.train --config FILE [--resume]``: one process, torchrun, many nodes):

- :mod:`.config`: the run config, every key declared once in ``RUN_SPEC`` (dataclass, checks, form, ``--set``);
- :mod:`.train`: :class:`~.train.FaceTrainer` and the command line;
- :mod:`.datasets`, :mod:`.recordio`: the training set; insightface's RecordIO and ``.bin`` sets without MXNet;
- :mod:`.backbones`, :mod:`.partial_fc`: iresnet18/34/50/100 and MobileFaceNet; the class centres sharded
  across ranks, any margin of :mod:`arcface_viz.losses`;
- :mod:`.verification`: flip-test embeddings, the LFW protocol, the held-out embeddings of embeddings.npz;
- :mod:`.checkpoints`, :mod:`.metrics`, :mod:`.distributed`, :mod:`.files`: per-rank checkpoints,
  metrics.jsonl, the process group, atomic writes.

Runs (the Training runs page and ``arcface-viz runs``): :mod:`.runs` (the SQLite registry), :mod:`.launch`
(what a launch checks first; the launch form), :mod:`.processes` (finding, signalling and reaping a run's
processes), :mod:`.prepare` (data sets inside the data roots).

Presets stay in ``arcface_viz/configs/`` so command lines written before this package existed still work.
"""
