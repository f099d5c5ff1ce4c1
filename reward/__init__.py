"""Differentiable reward models (CLIP score, PickScore, HPSv2.1, ImageReward, aesthetic) behind one interface."""
