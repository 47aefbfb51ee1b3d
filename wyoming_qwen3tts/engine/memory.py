"""Keep the resident memory of a loaded model close to what it uses.

* `trim_heap`: loading rewrites ~1 GB of weights in pieces of a few MB and a request allocates activations of
  similar sizes; glibc keeps such freed blocks in its arenas, so the process would stay at its high-water
  mark (measured: 0.5-0.7 GB above what is live). `malloc_trim(0)` hands them back; it takes a few ms and
  runs after loading and whenever an engine goes idle.
* `release_file_pages`: after loading, the model stops viewing the checkpoint's memory map at all (the
  600 MB text embedding is re-mapped, so only the rows in use become resident).
* `drop_file_pages`: a page of a memory-mapped checkpoint, once read, stays resident while the file is mapped.
  After a load-time rewrite has copied a weight (fused, quantized, packed), its pages are dropped at once,
  so the load peak holds one layer twice instead of the whole model.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import logging
import os
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import nn

_LOGGER = logging.getLogger(__name__)
_LIBC: Optional[Any] = None
_LOOKED = False
_PAGE = 4096
_MADV_DONTNEED = 4


def _libc() -> Optional[Any]:
    global _LIBC, _LOOKED
    if not _LOOKED:
        _LOOKED = True
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _LIBC = None
    return _LIBC


def trim_heap() -> None:
    """malloc_trim(0) where the C library has it (glibc); a no-op elsewhere."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        try:
            libc.malloc_trim(0)
        except Exception:  # never let housekeeping fail a request
            _LOGGER.debug("malloc_trim failed", exc_info=True)


def _file_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's file-backed mappings (Linux /proc/self/maps; empty elsewhere)."""
    spans = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            for line in fh:
                fields = line.split(maxsplit=5)
                # address perms offset dev inode [path]: inode 0 is anonymous memory (heap, stacks, mmap(-1)).
                if len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/"):
                    start, end = fields[0].split("-")
                    spans.append((int(start, 16), int(end, 16)))
    except OSError:
        return []
    return sorted(spans)


def file_storages(state: Iterable[torch.Tensor]) -> set[int]:
    """Addresses of the storages behind the memory-mapped tensors of a checkpoint's state dict.

    Only storages that really lie in a file mapping: madvise(MADV_DONTNEED) on anonymous memory (a state
    dict converted in memory, say) would zero it instead of dropping pages that can be read again."""
    spans = _file_mappings()
    starts = [s for s, _ in spans]
    found = set()
    for t in state:
        if t.device.type != "cpu" or t.layout != torch.strided:
            continue
        ptr = t.untyped_storage().data_ptr()
        i = bisect.bisect_right(starts, ptr) - 1
        if i >= 0 and ptr < spans[i][1]:
            found.add(ptr)
    return found


def drop_file_pages(tensors: Iterable[Any], mapped: set[int]) -> None:
    """madvise(MADV_DONTNEED) the whole pages under each tensor whose storage is in `mapped` (file-backed).

    Only ever applied to read-only file mappings: the kernel re-reads such a page from the page cache if it
    is touched again, so this is safe even for tensors still in use (it only costs a re-read)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "madvise") or not mapped:
        return
    for tensor in tensors:
        if tensor is None or tensor.device.type != "cpu" or tensor.layout != torch.strided:
            continue
        if tensor.untyped_storage().data_ptr() not in mapped:
            continue
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        first, last = -(-start // _PAGE) * _PAGE, end // _PAGE * _PAGE
        if last > first:
            libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


def release_file_pages(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    prefix: str,
    directory: str | os.PathLike[str],
    remap: Iterable[str] = (),
) -> int:
    """Stops `module` from pinning the memory map behind `state` (after load-time rewrites).

    Every page of a mapped checkpoint that was read stays in the process's resident memory while any
    tensor still views the mapping, although the rewritten (fused, quantized, packed) weights no longer
    need them. Tensors of `module` still backed by `state` are therefore copied, except the keys in `remap`
    (relative to `prefix`), which are taken from a fresh mapping of the same files where only the rows
    actually used become resident (the 600 MB text embedding). The caller then drops `state`.
    Returns the bytes copied.
    """
    from .checkpoint import load_state_dict

    backed = file_storages(state.values())
    remap = set(remap)
    fresh: Optional[dict[str, torch.Tensor]] = None
    copied = 0
    for mod_name, sub in module.named_modules():
        for table in (sub._parameters, sub._buffers):
            for name, tensor in list(table.items()):
                if tensor is None or tensor.device.type != "cpu" or tensor.layout != torch.strided:
                    continue  # not on the map (GPU tensors, oneDNN-packed weights)
                if tensor.untyped_storage().data_ptr() not in backed:
                    continue
                key = f"{mod_name}.{name}" if mod_name else name
                if key in remap and prefix + key in state and state[prefix + key].dtype == tensor.dtype:
                    if fresh is None:
                        fresh = load_state_dict(directory)
                    value = fresh[prefix + key]
                else:
                    value = tensor.detach().clone()
                    copied += value.numel() * value.element_size()
                    drop_file_pages([tensor], backed)  # the copy is enough: not both until the map goes
                table[name] = (
                    nn.Parameter(value, requires_grad=False) if isinstance(tensor, nn.Parameter) else value
                )
    return copied
