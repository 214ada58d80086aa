"""The dermablate dashboard (Panel) and report over the results contract; never imports Ray."""
