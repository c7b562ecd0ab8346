"""The full-scale face-recognition backend: a closed group the lessons never import.

- :mod:`.train`: the trainer, ``python -m arcface_viz.train --config FILE [--resume]``
  (one process, torchrun, many nodes);
- :mod:`.runs`: the SQLite run registry, the launcher and process control behind the Training runs page;
- :mod:`.backbones`: iresnet18/34/50/100 and MobileFaceNet;
- :mod:`.partial_fc`: the class-centre matrix sharded across ranks, any margin of :mod:`arcface_viz.losses`;
- :mod:`.recordio`: insightface's RecordIO and ``.bin`` verification sets without MXNet.

Presets stay in ``arcface_viz/configs/`` so command lines written before this package existed still work.
"""
