"""Conditional VAE for synthetic training images (the baseline_synth arm).

    store.ensure_cvae(cfg, data_root, splits) -> path of cvae.pt   # train once per split + config, then reuse
    synthetic.add_synthetic(cfg, ds, splits, train, side)    # what core.training.prepare_data calls

    python -m core.cvae train --data-root DIR --out DIR [--resolution 64 --epochs 50 ...]
    python -m core.cvae sample --model DIR/cvae.pt --class mel --n 16 --out DIR
"""
