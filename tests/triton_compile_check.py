"""Compile the Triton kernels to GPU machine code for several GPUs, on a machine without one.

Run in a process without TRITON_INTERPRET (``python tests/triton_compile_check.py``): Triton compiles down to
cubin with its bundled ptxas for any target, so code that only the GPU compiler rejects is caught in CI.
The compile-time arguments are the ones the launchers pick (``triton_loss._kernel_meta``) for C = 320.
``--resources`` prints each kernel's registers and stack (spills) as ptxas allotted them.
"""

import os
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from arl_fast.backends import triton as tlo

POINTERS = {"z", "out", "lse_ptr", "sums_ptr", "grad_ptr", "pooled_grad", "d", "pooled"}
WIDE = {"s_v", "o_v", "d_v"}  # distances between the two views' tensors
ALIGNED = POINTERS | WIDE | {"s_b", "s_t", "C", "o_b", "o_t"}  # multiples of 16 at C = 320, as specialised at launch
TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}
# Hopper's wgmma with TF32, Ampere's mma with bf16, Turing's fp32 FMA (its fp16 computed in fp32)
CASES = [((9, 0), torch.float32, "high"), ((8, 0), torch.bfloat16, "high"), ((7, 5), torch.float16, "high")]


def compile_kernel(kernel, capability, dtype, meta):
    constexprs = {k: v for k, v in meta.items() if k != "num_warps"}
    constexprs["s_c"] = 1  # channels contiguous
    accumulator = TYPES[tlo._accumulator_dtype(dtype)]
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "z":
            signature[name] = "*" + TYPES[dtype]
        elif name in POINTERS:
            signature[name] = "*" + accumulator
        else:
            signature[name] = "i64" if name in WIDE else "i32"
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
             if name in ALIGNED and name not in constexprs}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)
    return triton.compile(source, target=target, options={"num_warps": meta.get("num_warps", 4)})


def resources(compiled):
    """ptxas's register and stack use of a compiled kernel, read back with the bundled cuobjdump."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        report = subprocess.run([tool, "--dump-resource-usage", cubin.name], capture_output=True, text=True).stdout
    return " ".join(word for line in report.splitlines() if "REG:" in line for word in line.split()[:2])


def main():
    show = "--resources" in sys.argv
    for capability, dtype, precision in CASES:
        kernels = []
        for term in (tlo._TEMPORAL, tlo._INSTANCE):
            for pool in (False, True):
                _, meta = tlo._kernel_meta(term, True, 8, 320, dtype, capability, precision)
                meta["POOL"] = pool
                kernels.append((f"forward {term} {pool}", compile_kernel(tlo._forward_kernel, capability, dtype, meta)))
                _, meta = tlo._kernel_meta(term, False, 8, 320, dtype, capability, precision)
                meta.update(POOL=pool, ACCUMULATE=term == tlo._INSTANCE)
                compiled = compile_kernel(tlo._backward_kernel, capability, dtype, meta)
                kernels.append((f"backward {term} {pool}", compiled))
        block_r, block_c = tlo._elementwise_blocks(capability)
        meta = dict(BLOCK_R=block_r, BLOCK_C=block_c)
        kernels.append(("unpool", compile_kernel(tlo._unpool_kernel, capability, dtype, meta)))
        meta["ACC"] = tlo._TL_DTYPES[tlo._accumulator_dtype(dtype)]
        kernels.append(("pool", compile_kernel(tlo._pool_kernel, capability, dtype, meta)))
        print(f"compiled for sm_{capability[0]}{capability[1]}, {dtype}, matmul precision {precision!r}")
        for name, compiled in kernels if show else ():
            print(f"  {name}: {resources(compiled)}")


if __name__ == "__main__":
    main()
