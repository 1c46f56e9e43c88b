"""A cache prefetch hint for numba kernels (``llvm.prefetch``), shared by the kernels that pipeline.

Kernels whose per-packet work is a few loads at hashed, random addresses (the exact task's flow index,
the sketches' cells) hash a block of packets ahead, :func:`prefetch` the lines they will touch, and
only then read them, so the cache misses of a block overlap instead of following one another.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Hint the CPU to bring ``arr[idx]`` (1-D array) into the cache; never faults, returns nothing."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(idx, types.Integer)):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        # one declaration per module whatever the element type: the address goes as a byte pointer
        ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # write access (the slot or row is usually updated), keep in all cache levels, data
        builder.call(fn, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen
