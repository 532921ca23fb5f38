"""One DDPM per label (diffusers UNet2DModel + DDPMScheduler): training and sharded sampling."""


def n_shards(total: int, shard_size: int) -> int:
    """Shards of shard_size that hold `total` images (light: the Snakefile imports it)."""
    return -(-total // shard_size) if total > 0 else 0


def shard_range(shard: int, total: int, shard_size: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, max(0, min(shard_size, total - start))
