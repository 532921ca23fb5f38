from mammosynth.ddpm.sample import sample_shard, shard_range
from mammosynth.runtime import job

with job(snakemake.log[0], snakemake.threads):
    cfg, wc = snakemake.params.sampling, snakemake.wildcards
    start, count = shard_range(int(wc.shard), snakemake.params.total, cfg["shard_size"])
    sample_shard(snakemake.input[0], snakemake.output[0], seed=snakemake.params.seed,
                 split=wc.split, label=wc.label, start=start, count=count,
                 scheduler=cfg["scheduler"], steps=cfg["steps"], batch_size=cfg["batch_size"],
                 guidance_scale=cfg["guidance_scale"], size=snakemake.params.size)
