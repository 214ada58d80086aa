"""Ray on top of core: a Tune sweep over the ablation arms, each trial a Ray Train DDP run.

core never imports this package; everything here calls into core.
"""
