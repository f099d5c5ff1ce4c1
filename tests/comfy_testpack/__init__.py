"""Test-only node pack: loaders for tiny random models of every family, so workflow tests run through the real
execution engine without model files. Linked into the test server's custom_nodes next to Quickstep; never shipped."""


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension, io

    from . import tiny_models

    class TinyCheckpoint(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="QuickstepTestTinyCheckpoint",
                display_name="Tiny Test Checkpoint",
                category="quickstep/testing",
                description="A tiny, deterministically initialised MODEL, CLIP and VAE of one family (tests only).",
                inputs=[io.Combo.Input("family", options=list(tiny_models.FAMILIES), tooltip="Model family."),
                        io.Int.Input("seed", default=0, min=0, max=1000, tooltip="Weight seed."),
                        io.Int.Input("channels", default=32, min=32, max=256, step=32, optional=True,
                                     tooltip="UNet width (SD-style families only): larger is slower.")],
                outputs=[io.Model.Output(tooltip="tiny model"), io.Clip.Output(tooltip="tiny text encoder"),
                         io.Vae.Output(tooltip="tiny VAE")],
            )

        @classmethod
        def execute(cls, family, seed, channels=32) -> io.NodeOutput:
            return io.NodeOutput(*tiny_models.build_family(family, seed, channels))

    class TestPack(ComfyExtension):
        async def get_node_list(self):
            return [TinyCheckpoint]

    return TestPack()
