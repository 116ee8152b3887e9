# lt-noise on a CUDA PyTorch base image. Build and run (one GPU):
#   docker build -t lt-noise .
#   docker run --gpus all --ipc=host -v /path/to/datasets:/data -v $PWD/runs:/opt/lt-noise/runs lt-noise \
#       fit --config configs/dynamic_loss_cifar10nlt.yaml --data.init_args.root /data
# Several GPUs on one machine (Lightning DDP, one process per GPU):
#   docker run --gpus all --ipc=host ... lt-noise fit --config CONFIG --trainer.devices 4 --trainer.strategy ddp
# Several machines: run the same command on every node with the rendezvous of Lightning/torchrun, e.g.
#   docker run --gpus all --ipc=host --network host \
#       -e MASTER_ADDR=node0 -e MASTER_PORT=29500 -e NODE_RANK=<0..N-1> -e WORLD_SIZE=<N * gpus per node> \
#       lt-noise fit --config CONFIG --trainer.devices 8 --trainer.num_nodes N --trainer.strategy ddp
# (under SLURM, `srun` sets these and Lightning detects it). See README.md, "Many GPUs".
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/lt-noise

# Dependencies first (cached layer), then the package itself. torch/torchvision come from the image.
COPY pyproject.toml README.md ./
COPY lt_noise ./lt_noise
RUN pip install --upgrade pip && pip install .
COPY configs ./configs
COPY tools ./tools

ENTRYPOINT ["lt-noise"]
CMD ["--help"]
