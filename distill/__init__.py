"""LADD: latent adversarial diffusion distillation of a ComfyUI checkpoint into a 1-4 step LoRA student."""
