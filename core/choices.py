"""The values a config key may take, shared by core/config.py (which validates them) and the
factories that act on them. Standard library only: importing the config imports no torch."""

PRETRAINED = ("none", "imagenet", "pypi")  # or the path of a weights file
LOSS_KINDS = ("ce", "focal")
WEIGHTINGS = ("none", "inverse_freq", "class_balanced")
SELECTION_METRICS = ("val_acc", "val_macro_f1", "val_mel_recall")
SYNTHETIC_MODES = ("none", "cvae")
CVAE_RESOLUTIONS = (32, 64, 96, 128)  # 32 is for tests and the smoke profile
AUGMENT = ("auto", "cpu", "device")
AUTO_AUGMENT = ("none", "trivial", "randaugment")
TRACKERS = ("tensorboard", "mlflow", "wandb")  # core/tracking.py and the sweep's Tune callbacks
