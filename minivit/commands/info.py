"""``minivit info``: what backend and device minivit would use, and every named config that
``--config`` accepts: the ViTs, then the ResNets (``train`` only: convolutional teachers)."""

from minivit.backend import DEFAULT_DTYPE, device_name, get_backend
from minivit.models.resnet_config import RESNET_CONFIGS, count_resnet_params
from minivit.models.vit_config import CONFIGS, count_params


def add_arguments(parser):
    pass


def _tuple(values) -> str:
    return ",".join(str(v) for v in values)


def run(args) -> int:
    print(f"minivit backend : {get_backend()}")
    print(f"device          : {device_name()}")
    print(f"default dtype   : {DEFAULT_DTYPE} (float64 for gradient checks)")
    print()
    print("ViT configs (--config of train, pretrain and gradcheck):")
    print(f"{'config':<12} {'image':>5} {'patch':>5} {'dim':>5} {'depth':>5} {'heads':>5} "
          f"{'mlp':>5} {'classes':>7} {'params':>13}")
    for name, c in CONFIGS.items():
        print(f"{name:<12} {c.image_size:>5} {c.patch_size:>5} {c.embed_dim:>5} {c.depth:>5} "
              f"{c.num_heads:>5} {c.mlp_dim:>5} {c.num_classes:>7} {count_params(c):>13,}")
    print()
    print("ResNet configs (--config of train: a convolutional teacher for --teacher):")
    print(f"{'config':<12} {'image':>5} {'blocks':>11} {'widths':>11} {'classes':>7} "
          f"{'params':>13}")
    for name, c in RESNET_CONFIGS.items():
        print(f"{name:<12} {c.image_size:>5} {_tuple(c.blocks):>11} {_tuple(c.widths):>11} "
              f"{c.num_classes:>7} {count_resnet_params(c):>13,}")
    return 0
