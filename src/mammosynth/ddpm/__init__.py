"""One DDPM per label (diffusers UNet2DModel + DDPMScheduler): training and sharded sampling."""
