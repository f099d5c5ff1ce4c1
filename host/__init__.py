"""Development harness: find, install and drive a real ComfyUI host for Quickstep's tests and demo.

Nothing here is imported by ComfyUI when it loads the pack; it is the code behind the README's two commands
(`python3 -m host demo`, `python3 -m host test`).
"""
