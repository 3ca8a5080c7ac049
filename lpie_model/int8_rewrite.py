"""Rewrites of a quantized .tflite flatbuffer: what TF's quantizer leaves slow, made int8.

`rewrite_int8` (every int8 export) applies `int8_elu`, `identity_minimum` and
`relu_as_requantize`.

TF 2.21's post-training quantizer never quantizes ELU: a full-integer export holds, for every
ELU, the island

    int8 t_in -> DEQUANTIZE -> float32 -> ELU -> float32 -> QUANTIZE -> int8 t_out

which converts a whole activation to float and back and splits XNNPACK's delegated graph.
TFLite's builtin ELU has an int8 kernel (a 256-entry lookup table built from the input and
output scales and zero points; the runtime registers ELU at op version 1 only and picks the
kernel by tensor type), and XNNPACK delegates int8 ELU too. `int8_elu` replaces each island
by one ELU from `t_in` to `t_out`. The table holds, for each int8 input, the quantized ELU of
its dequantized value: what the island computes, entry for entry, so outputs stay those of the
unrewritten model up to float rounding in the table (at most one step of `t_out`'s scale).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lpie_model.tflite_model import ExportError

# LiteRT registers ELU at version 1 only ("Didn't find op for builtin opcode 'ELU' version
# '2'"); its version-1 kernel dispatches on the tensor type and takes int8.
ELU_INT8_VERSION = 1


def rewrite_int8(content: bytes) -> bytes:
    """Both rewrites of this module (`int8_elu`, then `identity_minimum`) in one pass over the
    flatbuffer; what every int8 export gets. A model with nothing to rewrite comes back as is.

    Raises:
        ExportError: `content` is not a readable .tflite flatbuffer.
    """
    return _rewrite(content, (_fuse_elu, _drop_identity_minimum, _relu_as_requantize))


def int8_elu(content: bytes) -> bytes:
    """`content` with every DEQUANTIZE -> ELU -> QUANTIZE island replaced by one int8 ELU.

    An island is rewritten only when its two float tensors feed nothing else and are no
    subgraph or signature output, and its int8 tensors are per-tensor quantized; other ops,
    tensors, buffers and metadata are kept (dead tensors are dropped and indices renumbered).
    A model without islands comes back unchanged.

    Raises:
        ExportError: `content` is not a readable .tflite flatbuffer.
    """
    return _rewrite(content, (_fuse_elu,))


def identity_minimum(content: bytes) -> bytes:
    """`content` without int8 MINIMUM ops that cannot change their input.

    LPIENet's output clip `relu(min(x, 1 - 1e-5))` quantizes to MINIMUM(x, c) whose input,
    constant and output share the clip's own scale: c is 127, the producer of x saturates at
    the clip already, and the op is an identity. It stays in the graph nonetheless, runs
    outside XNNPACK (which takes no int8 MINIMUM) on TFLite's single-threaded reference kernel
    and splits the delegated graph. Such an op (constant all 127, one per-tensor
    quantization for input, constant and output) is removed, its consumers reading its input,
    quantization and its output is no model output. Outputs are unchanged, bit for bit.
    """
    return _rewrite(content, (_drop_identity_minimum,))


def relu_as_requantize(content: bytes) -> bytes:
    """`content` with each int8 RELU whose output zero point is -128 made an int8 QUANTIZE.

    Such a RELU clamps at its output's zero point, i.e. at -128, which requantizing saturates
    to anyway: it is a requantization from its input's scale to its output's. XNNPACK runs
    an int8 -> int8 QUANTIZE but no int8 RELU that changes scale (it ran on TFLite's own
    kernel, outside the delegated graph). Outputs may differ by one step of the output scale
    where the two kernels round differently.
    """
    return _rewrite(content, (_relu_as_requantize,))


def _rewrite(content: bytes, passes: tuple[Any, ...]) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    except Exception as e:  # flatbuffers raises from deep inside on foreign bytes
        raise ExportError(f"not a readable .tflite model ({e})") from None
    changed = 0
    for rewrite in passes:
        for g in range(len(model.subgraphs)):
            n = rewrite(model, g)
            if n:
                _drop_dead_tensors(model, g)
                changed += n
    if changed == 0:
        return bytes(content)
    _drop_unused_opcodes(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _fuse_elu(model: Any, g: int) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    ops = schema.BuiltinOperator
    codes = [_code(c) for c in model.operatorCodes]
    sub = model.subgraphs[g]
    islands = _islands(model, g, codes, ops)
    if not islands:
        return 0
    elu_int8_index = _elu_int8_opcode(model, codes, ops, schema)
    drop_ops = set()
    for deq, elu, quant in islands:
        first, mid, last = sub.operators[deq], sub.operators[elu], sub.operators[quant]
        mid.inputs = [first.inputs[0]]
        mid.outputs = [last.outputs[0]]
        mid.opcodeIndex = elu_int8_index
        drop_ops.update((deq, quant))
    sub.operators = [op for i, op in enumerate(sub.operators) if i not in drop_ops]
    return len(islands)


def _drop_identity_minimum(model: Any, g: int) -> int:
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema

    sub = model.subgraphs[g]
    exposed = {int(t) for t in sub.outputs} | _signature_tensors(model, g)
    produced = {int(t) for op in sub.operators for t in op.outputs}
    replace: dict[int, int] = {}
    drop = set()
    for i, op in enumerate(sub.operators):
        code = _code(model.operatorCodes[op.opcodeIndex])
        if code != schema.BuiltinOperator.MINIMUM or len(op.inputs) != 2:
            continue
        out = int(op.outputs[0])
        a, b = (int(t) for t in op.inputs)
        x, c = (a, b) if b not in produced else (b, a)
        if c in produced or out in exposed or x == c:
            continue
        tensors = [sub.tensors[t] for t in (x, c, out)]
        if not all(_per_tensor_int8(t) for t in tensors):
            continue
        if (
            len(
                {
                    (float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0]))
                    for t in tensors
                }
            )
            != 1
        ):
            continue
        data = model.buffers[tensors[1].buffer].data
        if data is None or len(data) == 0:
            continue
        if not np.all(np.asarray(data, dtype=np.uint8).view(np.int8) == 127):
            continue
        replace[out] = x
        drop.add(i)
    if not drop:
        return 0
    sub.operators = [op for i, op in enumerate(sub.operators) if i not in drop]
    for op in sub.operators:
        op.inputs = [_follow(replace, int(t)) for t in op.inputs]
    return len(drop)


def _relu_as_requantize(model: Any, g: int) -> int:
    from tensorflow.lite.python import schema_py_generated as schema

    ops = schema.BuiltinOperator
    sub = model.subgraphs[g]
    quantize = None
    changed = 0
    for op in sub.operators:
        if _code(model.operatorCodes[op.opcodeIndex]) != ops.RELU or len(op.inputs) != 1:
            continue
        x, y = sub.tensors[int(op.inputs[0])], sub.tensors[int(op.outputs[0])]
        if (
            not (_per_tensor_int8(x) and _per_tensor_int8(y))
            or int(y.quantization.zeroPoint[0]) != -128
        ):
            continue
        if quantize is None:
            quantize = _opcode(model, ops.QUANTIZE, schema)
        op.opcodeIndex = quantize
        op.builtinOptionsType, op.builtinOptions = 0, None
        changed += 1
    return changed


def _opcode(model: Any, code: int, schema: Any) -> int:
    """Index of an operator code for builtin `code` (the highest version present, else 1)."""
    found = [i for i, c in enumerate(model.operatorCodes) if _code(c) == code]
    if found:
        return max(found, key=lambda i: model.operatorCodes[i].version)
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(
        code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
    )
    opcode.version = 1
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _follow(replace: dict[int, int], t: int) -> int:
    while t in replace:
        t = replace[t]
    return t


def float_islands(content: bytes) -> int:
    """How many DEQUANTIZE -> ELU -> QUANTIZE islands (see `int8_elu`) a .tflite holds."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    codes = [_code(c) for c in model.operatorCodes]
    ops = schema.BuiltinOperator
    return sum(len(_islands(model, g, codes, ops)) for g in range(len(model.subgraphs)))


def _code(opcode: Any) -> int:
    # Codes < 127 may sit in either field (the schema moved them); the larger one is the code.
    return max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))


def _islands(model: Any, g: int, codes: list[int], ops: Any) -> list[tuple[int, int, int]]:
    """(dequantize, elu, quantize) operator indices of each rewritable island of subgraph g."""
    sub = model.subgraphs[g]
    consumers: dict[int, list[int]] = defaultdict(list)
    producer: dict[int, int] = {}
    for i, op in enumerate(sub.operators):
        for t in op.inputs:
            if t >= 0:
                consumers[int(t)].append(i)
        for t in op.outputs:
            producer[int(t)] = i
    exposed = {int(t) for t in sub.outputs} | _signature_tensors(model, g)
    found = []
    for e, op in enumerate(sub.operators):
        if codes[op.opcodeIndex] != ops.ELU or len(op.inputs) != 1 or len(op.outputs) != 1:
            continue
        f_in, f_out = int(op.inputs[0]), int(op.outputs[0])
        d = producer.get(f_in)
        if d is None or codes[sub.operators[d].opcodeIndex] != ops.DEQUANTIZE:
            continue
        if consumers[f_in] != [e] or len(consumers[f_out]) != 1 or {f_in, f_out} & exposed:
            continue
        q = consumers[f_out][0]
        if codes[sub.operators[q].opcodeIndex] != ops.QUANTIZE:
            continue
        t_in, t_out = int(sub.operators[d].inputs[0]), int(sub.operators[q].outputs[0])
        if all(_per_tensor_int8(sub.tensors[t]) for t in (t_in, t_out)):
            found.append((d, e, q))
    return found


def _per_tensor_int8(tensor: Any) -> bool:
    from tensorflow.lite.python import schema_py_generated as schema

    q = tensor.quantization
    return (
        tensor.type == schema.TensorType.INT8
        and q is not None
        and q.scale is not None
        and len(q.scale) == 1
        and q.zeroPoint is not None
        and len(q.zeroPoint) == 1
    )


def _signature_tensors(model: Any, g: int) -> set[int]:
    out = set()
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == g:
            out.update(int(t.tensorIndex) for t in (sig.inputs or []) + (sig.outputs or []))
    return out


def _elu_int8_opcode(model: Any, codes: list[int], ops: Any, schema: Any) -> int:
    for i, c in enumerate(model.operatorCodes):
        if codes[i] == ops.ELU and c.version == ELU_INT8_VERSION:
            return i
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = ops.ELU
    opcode.deprecatedBuiltinCode = min(ops.ELU, ops.PLACEHOLDER_FOR_GREATER_OP_CODES)
    opcode.version = ELU_INT8_VERSION
    model.operatorCodes.append(opcode)
    codes.append(ops.ELU)
    return len(model.operatorCodes) - 1


def _drop_dead_tensors(model: Any, g: int) -> None:
    """Removes tensors of subgraph g that no op, subgraph I/O or signature refers to."""
    sub = model.subgraphs[g]
    used = {int(t) for op in sub.operators for t in list(op.inputs) + list(op.outputs) if t >= 0}
    used |= {int(t) for t in sub.inputs} | {int(t) for t in sub.outputs}
    used |= {int(t) for op in sub.operators for t in (op.intermediates or []) if t >= 0}
    used |= _signature_tensors(model, g)
    keep = sorted(used)
    new = {old: i for i, old in enumerate(keep)}

    def remap(ts: Any) -> list[int]:
        return [new[int(t)] if t >= 0 else -1 for t in ts]

    sub.tensors = [sub.tensors[t] for t in keep]
    for op in sub.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = remap(op.intermediates)
    sub.inputs, sub.outputs = remap(sub.inputs), remap(sub.outputs)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == g:
            for t in (sig.inputs or []) + (sig.outputs or []):
                t.tensorIndex = new[int(t.tensorIndex)]


def _drop_unused_opcodes(model: Any) -> None:
    used = sorted({op.opcodeIndex for sub in model.subgraphs for op in sub.operators})
    new = {old: i for i, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sub in model.subgraphs:
        for op in sub.operators:
            op.opcodeIndex = new[op.opcodeIndex]
