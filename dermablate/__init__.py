"""dermablate: Ray-distributed ablation runner for HAM10000 skin-lesion classification (`dermablate --help`)."""
