"""Few-step sampling: the shared timestep grid, model-aware sigma schedules and the Turbo sampler rule."""
