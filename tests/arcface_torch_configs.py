"""insightface arcface_torch's config files, transcribed (keys and values) for the converter and parity tests.

Import as ``from arcface_torch_configs import CONFIGS, BASE_PY, write_configs``.  Each is a job config of
arcface_torch's ``configs/`` folder as its repository has it (comments dropped); ``BASE_PY`` is its
``configs/base.py``, which its ``train_v2.py`` reads first.  ``vit_t`` names a backbone we do not have, and
``3millions`` a negative warm-up: the converter must refuse both, naming the key.
"""

from __future__ import annotations

from pathlib import Path

BASE_PY = '''from easydict import EasyDict as edict

config = edict()

# Margin Base Softmax
config.margin_list = (1.0, 0.5, 0.0)
config.network = "r50"
config.resume = False
config.save_all_states = False
config.output = "ms1mv3_arcface_r50"

config.embedding_size = 512

# Partial FC
config.sample_rate = 1
config.interclass_filtering_threshold = 0

config.fp16 = False
config.batch_size = 128

# For SGD
config.optimizer = "sgd"
config.lr = 0.1
config.momentum = 0.9
config.weight_decay = 5e-4

# For AdamW
# config.optimizer = "adamw"
# config.lr = 0.001
# config.weight_decay = 0.1

config.verbose = 2000
config.frequent = 10

# For Large Sacle Dataset, such as WebFace42M
config.dali = False
config.dali_aug = False

# Gradient ACC
config.gradient_acc = 1

# setup seed
config.seed = 2048

# dataload numworkers
config.num_workers = 2

# WandB Logger
config.wandb_key = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
config.suffix_run_name = None
config.using_wandb = False
config.wandb_entity = "entity"
config.wandb_project = "project"
config.wandb_log_all = True
config.save_artifacts = False
config.wandb_resume = False # resume wandb run: Only if the you wand t resume the last run that it was interrupted
'''

_HEAD = "from easydict import EasyDict as edict\n\n# make training faster\n# our RAM is 256G\n\nconfig = edict()\n"

CONFIGS = {
    "ms1mv3_r50": _HEAD + '''config.margin_list = (1.0, 0.5, 0.0)
config.network = "r50"
config.resume = False
config.output = None
config.embedding_size = 512
config.sample_rate = 1.0
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 128
config.lr = 0.1
config.verbose = 2000
config.dali = False

config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.num_epoch = 20
config.warmup_epoch = 0
config.val_targets = ['lfw', 'cfp_fp', "agedb_30"]
''',
    "glint360k_r100": _HEAD + '''config.margin_list = (1.0, 0.0, 0.4)
config.network = "r100"
config.resume = False
config.output = None
config.embedding_size = 512
config.sample_rate = 1.0
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 1e-4
config.batch_size = 128
config.lr = 0.1
config.verbose = 2000
config.dali = False

config.rec = "/train_tmp/glint360k"
config.num_classes = 360232
config.num_image = 17091657
config.num_epoch = 20
config.warmup_epoch = 0
config.val_targets = ['lfw', 'cfp_fp', "agedb_30"]
''',
    "wf12m_conflict_r50_pfc03_filter04": _HEAD + '''config.margin_list = (1.0, 0.0, 0.4)
config.network = "r50"
config.resume = False
config.output = None
config.embedding_size = 512
config.sample_rate = 0.3
config.interclass_filtering_threshold = 0.4
config.fp16 = True
config.weight_decay = 5e-4
config.batch_size = 128
config.optimizer = "sgd"
config.lr = 0.1
config.verbose = 2000
config.dali = False

config.rec = "/train_tmp/WebFace12M_Conflict"
config.num_classes = 1017970
config.num_image = 12720066
config.num_epoch = 20
config.warmup_epoch = config.num_epoch // 10
config.val_targets = []
''',
    "wf42m_pfc03_40epoch_8gpu_vit_t": _HEAD + '''config.margin_list = (1.0, 0.0, 0.4)
config.network = "vit_t_dp005_mask0"
config.resume = False
config.output = None
config.embedding_size = 512
config.sample_rate = 0.3
config.fp16 = True
config.weight_decay = 0.1
config.batch_size = 512
config.optimizer = "adamw"
config.lr = 0.001
config.verbose = 2000
config.dali = False

config.rec = "/train_tmp/WebFace42M"
config.num_classes = 2059906
config.num_image = 42474557
config.num_epoch = 40
config.warmup_epoch = config.num_epoch // 10
config.val_targets = []
''',
    "3millions": '''from easydict import EasyDict as edict

# configs for test speed

config = edict()
config.margin_list = (1.0, 0.0, 0.4)
config.network = "mbf"
config.resume = False
config.output = None
config.embedding_size = 512
config.sample_rate = 0.1
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 512 # total_batch_size = batch_size * num_gpus
config.lr = 0.1  # batch size is 512

config.rec = "synthetic"
config.num_classes = 30 * 10000
config.num_image = 100000
config.num_epoch = 30
config.warmup_epoch = -1
config.val_targets = []
''',
}


def write_configs(folder: Path, with_base: bool = True) -> Path:
    """Write the configs (and base.py) into ``folder/configs`` as arcface_torch's tree has them; return it."""
    configs = folder / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    if with_base:
        (configs / "base.py").write_text(BASE_PY, encoding="utf-8")
    for name, text in CONFIGS.items():
        (configs / f"{name}.py").write_text(text, encoding="utf-8")
    return configs
