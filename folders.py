"""User-given file and folder names: each one must be a name its ComfyUI folder lists, and never escapes that folder.

Everything a node receives through `POST /prompt` is untrusted. A file name is accepted only when it is one of the
names the folder lists (`folder_paths.get_filename_list`, as core's loaders accept only their combo's entries), so an
absolute path, `..`, an empty or a 10,000-character name never reaches the filesystem. Names a node writes
(`filename_prefix`) must resolve inside the output folder, as core's SaveImage ensures. Errors are `BadName`
(a ValueError): they name the input, say what is expected, and never show file content. ComfyUI is imported lazily, so
scripts can use this module too (`folder`-free helpers such as `inside` need no ComfyUI at all).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: longest name accepted (Linux allows 4096 bytes for a path and 255 for each of its parts)
MAX_NAME = 1024
MAX_PART = 255
EXAMPLES = 5


class BadName(ValueError):
    """A user-given name that is not one the folder lists, or that would leave the folder."""


def shown(name, limit: int = 80) -> str:
    """`name` for an error message: its repr, cut to `limit` characters (a long name is not echoed whole)."""
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(name)} characters)"


def check_name(name, *, input: str, what: str = "a file name") -> str:
    """`name` itself is well formed: a non-empty relative string, without `..`, NUL or over-long parts.

    Returns the name with '\\' read as '/'. This is the shape check only; `listed` and `model_file` also require the
    name to be one the folder lists.
    """
    if not isinstance(name, str):
        raise BadName(f"{input} must be {what} (a string); got {type(name).__name__} {shown(name)}.")
    if not name.strip():
        raise BadName(f"{input} is empty; pick {what} from the list.")
    if len(name) > MAX_NAME or any(len(part) > MAX_PART for part in name.replace("\\", "/").split("/")):
        raise BadName(f"{input} is {len(name)} characters long, longer than any name the folder can hold "
                      f"({MAX_NAME} characters, {MAX_PART} for each part); pick {what} from the list.")
    if "\x00" in name:
        raise BadName(f"{input} contains a NUL character; pick {what} from the list.")
    normal = name.replace("\\", "/")
    if os.path.isabs(name) or normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        raise BadName(f"{input} must be {what} relative to its folder, not an absolute path; got {shown(name)}.")
    if ".." in normal.split("/"):
        raise BadName(f"{input} must stay inside its folder ('..' is not allowed); got {shown(name)}.")
    return normal


def listed(name, options: Sequence[str], *, input: str, where: str, what: str = "a file name", hint: str = "") -> str:
    """`name` if it is one of `options` (what the folder lists), else a BadName saying where to put the file
    (`hint` replaces the default "put the file there and refresh the list.")."""
    normal = check_name(name, input=input, what=what)
    for candidate in (name, normal):
        if candidate in options:
            return candidate
    if options:
        examples = ", ".join(repr(o) for o in list(options)[:EXAMPLES]) + (", ..." if len(options) > EXAMPLES else "")
        have = f"it lists {len(options)}: {examples}"
    else:
        have = "it is empty"
    raise BadName(f"{input} {shown(name)} is not in {where} ({have}). Pick a listed name, or "
                  f"{hint or 'put the file there and refresh the list.'}")


def folder_description(folder: str) -> str:
    import folder_paths

    paths = folder_paths.get_folder_paths(folder) if folder in folder_paths.folder_names_and_paths else []
    return f"the '{folder}' model folder ({', '.join(paths) if paths else 'not registered'})"


def model_file(folder: str, name, *, input: str, hint: str = "") -> Path:
    """The full path of `name` in ComfyUI's `folder` model folder (e.g. "loras", "checkpoints", "rewards").

    `name` must be one of `folder_paths.get_filename_list(folder)`: the entries of the node's combo.
    """
    import folder_paths

    options = folder_paths.get_filename_list(folder) if folder in folder_paths.folder_names_and_paths else []
    found = listed(name, options, input=input, where=folder_description(folder), hint=hint)
    full = folder_paths.get_full_path(folder, found)
    if full is None:  # listed a moment ago, gone now
        raise BadName(f"{input} {shown(name)} is no longer in {folder_description(folder)}; refresh the list.")
    return Path(full)


def subfolders(base: str | os.PathLike) -> list[str]:
    """The folders directly inside `base` (sorted), for a combo of folder names such as datasets."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def inside(base: str | os.PathLike, name, *, input: str, what: str = "a name", must_exist: bool = True) -> Path:
    """`base / name` when it stays inside `base` after resolving links (for folders a node lists itself, and for
    names it writes); a BadName otherwise. With must_exist, the path must also exist."""
    normal = check_name(name, input=input, what=what)
    root = os.path.realpath(base)
    target = os.path.realpath(os.path.join(root, normal))
    if os.path.commonpath((root, target)) != root:
        raise BadName(f"{input} {shown(name)} leads outside {base} (through a link); pick {what} inside it.")
    if must_exist and not os.path.exists(target):
        raise BadName(f"{input} {shown(name)} does not exist in {base}; pick one that is listed.")
    return Path(root) / normal


def output_prefix(prefix, *, input: str = "filename_prefix", output_dir: str | None = None,
                  width: int = 0, height: int = 0) -> tuple[str, str, int, str, str]:
    """`folder_paths.get_save_image_path` for a prefix that must stay inside the output folder:
    (full_output_folder, filename, counter, subfolder, filename_prefix), or a BadName naming `input`."""
    import folder_paths

    check_name(prefix, input=input, what="a file name prefix (e.g. 'quickstep/lora')")
    output_dir = output_dir or folder_paths.get_output_directory()
    inside(output_dir, prefix, input=input, what="a prefix inside the output folder", must_exist=False)
    try:
        return folder_paths.get_save_image_path(prefix, output_dir, width, height)
    except Exception as e:  # core raises a bare Exception for a prefix outside the folder
        raise BadName(f"{input} {shown(prefix)} must stay inside the output folder {output_dir}; "
                      f"use a relative prefix such as 'quickstep/lora'.") from e


def message(check, *args, **kwargs) -> str | bool:
    """True when `check(*args, **kwargs)` passes, else its error text: the `validate_inputs` form of a check."""
    try:
        check(*args, **kwargs)
    except ValueError as e:
        return str(e)
    return True
