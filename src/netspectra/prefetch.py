"""A cache prefetch hint for numba kernels (``llvm.prefetch``), shared by the kernels that pipeline.

Kernels whose per-packet work is a few loads at hashed, random addresses (the exact task's flow index,
the sketches' cells) hash a block of packets ahead, :func:`prefetch` the lines they will touch, and
only then read them, so the cache misses of a block overlap instead of following one another.
"""

from __future__ import annotations

from netspectra.jit import lazy_object


def _prefetch_intrinsic(rw: int):  # type: ignore[no-untyped-def]
    """An intrinsic hinting ``arr[idx]`` into every cache level, for a write (``rw=1``) or a read (0)."""
    from numba import types

    def typer(typingctx, arr, idx):  # type: ignore[no-untyped-def]
        from llvmlite import ir
        from numba.core import cgutils

        if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(idx, types.Integer)):
            return None
        sig = types.void(arr, idx)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(
                context, builder, signature.args[0], ary, [args[1]], wraparound=False
            )
            i32 = ir.IntType(32)
            # one declaration per module whatever the element type: the address goes as a byte pointer
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # access kind, keep in all cache levels (3), data (1)
            builder.call(fn, [ptr, ir.Constant(i32, rw), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = typer.__qualname__ = f"prefetch_rw{rw}"
    return typer


def _make(rw: int) -> object:
    from numba.extending import intrinsic

    made = intrinsic(_prefetch_intrinsic(rw))
    if rw:
        made.__doc__ = (
            "Hint ``arr[idx]`` (1-D array) into the cache for a write; never faults, returns nothing."
        )
    return made


# In the command line's numba-free mode (netspectra.jit) numba is not imported: the intrinsics are made
# when the process switches to numba, the only time numba's compiler reads them.
#: Hint the CPU to bring ``arr[idx]`` (1-D array) into the cache for a write (the slot or row is usually
#: updated); never faults, returns nothing.
prefetch = lazy_object(lambda: _make(1), "netspectra.prefetch.prefetch")
#: The same for a read (lines of a read-only table that several threads share stay shared).
prefetch_read = lazy_object(lambda: _make(0), "netspectra.prefetch.prefetch_read")
