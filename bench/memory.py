"""Memory held between forward and backward: what limits the sequence length a loss can train on."""

import torch


def saved_tensor_bytes(fn):
    """Run ``fn()`` (a forward pass) and return (its result, bytes of distinct tensors autograd saved for backward)."""
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(seen.values())
