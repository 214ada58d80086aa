# The image of dermablate's Ray nodes: Ray's GPU image at the Ray release requirements.txt pins,
# plus this package with its [ray] extra, installed by the step scripts/setup runs
# (scripts/install). It is not built by CI, which has no Docker; tests/test_cluster_files.py
# holds its base image and install step to the pins.
#
#   docker build -t YOUR_REGISTRY/dermablate:0.1.0 . && docker push YOUR_REGISTRY/dermablate:0.1.0
#
# cluster.yaml can run on it (docker: image:) instead of installing at set-up; kuberay/rayjob.yaml needs it.
FROM rayproject/ray:2.60.0-py311-gpu
COPY --chown=ray:users . /home/ray/dermablate
WORKDIR /home/ray/dermablate
RUN EXTRAS=ray bash scripts/install
