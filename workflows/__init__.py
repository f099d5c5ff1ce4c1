"""Quickstep's shipped workflows: one description (describe.py) from which the UI-format files in example_workflows/
(what ComfyUI's template browser lists) are built, and the API-format files in workflows/api/ are converted from them
(convert.py, as the frontend's own export does). `python -m workflows.build` rewrites both; `python -m workflows.queue`
runs a workflow headless. Nothing here is imported when ComfyUI loads the pack."""
