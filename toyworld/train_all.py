"""Retrain the whole toy family in order (VAE, CLIP, then the UNet on their outputs): `python -m toyworld.train_all`.

About three and a half hours on this 2-core CPU machine (VAE 15 min, CLIP 10, UNet 70 + 30 + 80). Writes
toyworld/weights/* and SHA256SUMS, and the loss curves to toyworld/logs/.
"""

from __future__ import annotations

from toyworld import models, train_clip, train_unet, train_vae


def main() -> None:
    train_vae.main([])
    train_clip.main([])
    train_unet.main([])
    for phase in (train_unet.PHASE2, train_unet.PHASE3):
        train_unet.main(phase + ["--init", str(models.WEIGHTS / models.UNET_FILE)])


if __name__ == "__main__":
    main()
