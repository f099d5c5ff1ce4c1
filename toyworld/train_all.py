"""Retrain the whole toy family in order (VAE, CLIP, then the UNet on their outputs): `python -m toyworld.train_all`.

About an hour on this CPU machine. Writes toyworld/weights/* and SHA256SUMS, and the loss curves to toyworld/logs/.
"""

from __future__ import annotations

from toyworld import train_clip, train_unet, train_vae


def main() -> None:
    train_vae.main([])
    train_clip.main([])
    train_unet.main([])


if __name__ == "__main__":
    main()
