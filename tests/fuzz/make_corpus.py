"""Write the committed fuzz corpus: malformed ONNX models and VNN-LIB properties.

    python tests/fuzz/make_corpus.py        # rewrites tests/fuzz/corpus/

Every entry pairs a model with a property and states what ``verifier verify`` must answer:
``3`` (input error), ``4`` (unsupported), ``3|4`` (either) or ``any`` (a verdict, or 3 or 4).
The expectation follows from what the mutation breaks, never from an earlier run. Paths in
``MANIFEST.csv`` are relative to the corpus folder; ``@models/…`` and ``@specs/…`` name
files of the repository. The corpus stays small (well under 1 MB).
"""
from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutate as mu  # noqa: E402  (this folder, also importable as tests/fuzz/mutate.py)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
BASE_PROPERTY = "base.vnnlib"
DIGITS = "@models/digits_mlp.onnx"
DIGITS_SPEC = "@specs/digits_mlp_eps0.01_idx0.vnnlib"


def _edit(name: str, edit) -> onnx.ModelProto:
    """The tiny MLP (or the conv model for names starting with ``conv_``) after ``edit(model)``."""
    m = mu.conv_model() if name.startswith("conv_") else mu.mlp_model()
    edit(m)
    return m


def _set_attr(node_index: int, name: str, value):
    def edit(m):
        node = m.graph.node[node_index]
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(name, value))
    return edit


def _dims(which: str, dims: list[int]):
    def edit(m):
        vi = m.graph.input[0] if which == "input" else m.graph.output[0]
        del vi.type.tensor_type.shape.dim[:]
        for d in dims:
            vi.type.tensor_type.shape.dim.add().dim_value = d
    return edit


def _huge_relu() -> onnx.ModelProto:
    """x (1, 10^9) → Relu → y: a declared shape far beyond any memory."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "huge",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10**9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10**9])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _fold_bomb(op: str) -> onnx.ModelProto:
    """A constant sub-graph whose folded value would take about 4 TB (checked before it is made)."""
    from onnx import numpy_helper

    inits = {"s": np.array([10**6, 10**6], np.int64)}
    if op == "Expand":
        inits["one"] = np.ones((1, 1), np.float32)
        make = helper.make_node("Expand", ["one", "s"], ["c"])
    else:
        make = helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.ones(1, np.float32)))
    nodes = [make, helper.make_node("ReduceSum", ["c"], ["r"], keepdims=0),
             helper.make_node("Add", ["x", "r"], ["y"])]
    graph = helper.make_graph(nodes, "bomb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


class _Fixed(random.Random):
    """Picks the first choice and returns ``value`` from ``random()``."""

    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def choice(self, seq):
        return seq[0]

    def random(self) -> float:
        return self.value


def _mutated(name: str, seed: int) -> onnx.ModelProto:
    return mu.MODEL_MUTATIONS[name](mu.mlp_model(), random.Random(seed))[0]


def model_entries() -> dict[str, tuple[object, str]]:
    """File name → (ModelProto or bytes, expected answer)."""
    digits = (ROOT / "models" / "digits_mlp.onnx").read_bytes()
    tiny = mu.mlp_model().SerializeToString()
    g = lambda m: m.graph  # noqa: E731
    return {
        "digits_truncated_half.onnx": (digits[: len(digits) // 2], "3"),
        "tiny_truncated_1_byte.onnx": (tiny[:1], "3"),
        "tiny_truncated_tail.onnx": (tiny[:-7], "3"),
        "int64_gemm_weight.onnx": (_edit("a", lambda m: g(m).initializer[0].CopyFrom(
            onnx.numpy_helper.from_array(np.ones((4, 6), np.int64), "W1"))), "3"),
        "string_initializer.onnx": (_mutated("string_tensor", 0), "3"),
        "dangling_node_input.onnx": (_edit("a", lambda m: g(m).node[1].input.__setitem__(0, "nowhere")), "3"),
        "cycle.onnx": (_edit("a", lambda m: g(m).node[0].input.__setitem__(0, "y")), "3"),
        "self_loop.onnx": (_edit("a", lambda m: g(m).node[1].input.__setitem__(0, "r")), "3"),
        "input_dim_negative.onnx": (_edit("a", _dims("input", [1, -7])), "3|4"),
        "input_dim_zero.onnx": (_edit("a", _dims("input", [1, 0])), "3|4"),
        "input_dim_1e9.onnx": (_edit("a", _dims("input", [1, 10**9])), "3|4"),
        "output_dim_2_62.onnx": (_edit("a", _dims("output", [1, 2**62])), "3|4"),
        "huge_declared_relu.onnx": (_huge_relu(), "3"),
        "fold_bomb_constant_of_shape.onnx": (_fold_bomb("ConstantOfShape"), "3"),
        "fold_bomb_expand.onnx": (_fold_bomb("Expand"), "3"),
        "initializer_dim_2_62.onnx": (_edit("a", lambda m: g(m).initializer[0].dims.__setitem__(0, 2**62)), "3"),
        "external_data_parent.onnx": (_external("../outside.bin"), "3"),
        "external_data_absolute.onnx": (_external("/etc/hostname"), "3"),
        "external_data_missing.onnx": (_external("absent.bin"), "3"),
        "duplicate_value_names.onnx": (_edit("a", lambda m: g(m).node[2].output.__setitem__(0, "h")), "3|4"),
        "graph_output_twice.onnx": (_edit("a", lambda m: g(m).output.extend([g(m).output[0]])), "3|4"),
        "no_graph_output.onnx": (_edit("a", lambda m: g(m).ClearField("output")), "3|4"),
        "output_not_produced.onnx": (_edit("a", lambda m: setattr(g(m).output[0], "name", "nobody")), "3"),
        "gemm_one_input.onnx": (_edit("a", lambda m: g(m).node[0].input.__delitem__(slice(1, None))), "3"),
        "relu_three_inputs.onnx": (_edit("a", lambda m: g(m).node[1].input.extend(["h", "h"])), "3"),
        "transb_float.onnx": (_edit("a", _set_attr(2, "transB", 2.5)), "3"),
        "alpha_string.onnx": (_edit("a", _set_attr(0, "alpha", "big")), "3"),
        "conv_strides_string.onnx": (_edit("conv_", _set_attr(0, "strides", "two")), "3"),
        "conv_pads_wrong_length.onnx": (_edit("conv_", _set_attr(0, "pads", [1, 1, 1])), "3"),
        "conv_group_zero.onnx": (_edit("conv_", _set_attr(0, "group", 0)), "3|4"),
        "opset_1.onnx": (mu.mlp_model(opset=1), "4"),
        "opset_99.onnx": (mu.mlp_model(opset=99), "4"),
        "ir_version_99.onnx": (_edit("a", lambda m: setattr(m, "ir_version", 99)), "4"),
        "unsupported_erf.onnx": (_edit("a", lambda m: setattr(g(m).node[1], "op_type", "Erf")), "4"),
        "custom_domain_op.onnx": (_edit("a", lambda m: setattr(g(m).node[1], "domain", "com.example")), "3|4"),
        "int64_graph_input.onnx": (_edit("a", lambda m: setattr(g(m).input[0].type.tensor_type, "elem_type",
                                                                TensorProto.INT64)), "3|4"),
        "nan_weight.onnx": (_mutated("nonfinite_weights", 3), "3"),
        "sparse_initializer.onnx": (mu.sparse_tensor(mu.mlp_model(), _Fixed(0.0))[0], "4"),
        "sparse_constant.onnx": (mu.sparse_tensor(mu.mlp_model(), _Fixed(0.9))[0], "4"),
        "no_nodes.onnx": (_edit("a", lambda m: g(m).ClearField("node")), "3"),
        "no_graph.onnx": (_edit("a", lambda m: m.ClearField("graph")), "3"),
    }


def _external(location: str) -> onnx.ModelProto:
    return mu.set_external(mu.mlp_model(), "W1", location)


def property_entries() -> dict[str, tuple[str, str]]:
    """File name → (text, expected answer) for the tiny model (4 inputs, 3 outputs)."""
    base = mu.base_property()
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(4)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
    box = "".join(f"(assert (>= X_{i} 0.4))\n(assert (<= X_{i} 0.6))\n" for i in range(4))
    deep = lambda op, n: "(assert " + f"({op} " * n + "(>= Y_0 Y_1)" + ")" * n + ")\n"  # noqa: E731
    wide = "(assert (and " + " ".join(f"(or (>= Y_0 {j}) (<= Y_1 {-j}))" for j in range(25)) + "))\n"
    return {
        "unbalanced_open.vnnlib": (base + "(assert (>= Y_0 Y_1)\n", "3"),
        "unbalanced_close.vnnlib": (base + "))\n", "3"),
        "unknown_operator.vnnlib": (decl + box + "(assert (foo Y_0 Y_1))\n", "4"),
        "strict_less_than.vnnlib": (decl + box + "(assert (< Y_0 Y_1))\n", "4"),
        "undeclared_variable.vnnlib": (base + "(assert (>= Y_7 Y_1))\n", "3"),
        "empty_region.vnnlib": (base + "(assert (>= X_2 5.0))\n(assert (<= X_2 -5.0))\n", "3"),
        "duplicate_declaration.vnnlib": ("(declare-const X_0 Real)\n" + base, "3"),
        "number_1e400.vnnlib": (base.replace("0.6", "1e400", 1), "3"),
        "number_minus_1e400.vnnlib": (base.replace("0.4", "-1e400", 1), "3"),
        "number_nan.vnnlib": (base.replace("0.6", "NaN", 1), "3"),
        "number_inf.vnnlib": (base.replace("0.4", "-inf", 1), "3"),
        "number_1e-400_underflows.vnnlib": (base.replace("0.4", "1e-400", 1), "any"),
        "deep_and_10000.vnnlib": (decl + box + deep("and", 10_000), "any"),
        "deep_or_10000.vnnlib": (decl + box + deep("or", 10_000), "any"),
        "disjunction_2_pow_25.vnnlib": (decl + box + wide, "4"),
        "empty.vnnlib": ("", "3"),
        "whitespace_only.vnnlib": (" \n\t\n", "3"),
        "comment_only.vnnlib": ("; nothing here\n", "3"),
        "binary_junk.vnnlib": (bytes(range(256)).decode("latin-1"), "3"),
        "nul_bytes.vnnlib": (base.replace("(assert", "\x00(assert", 1), "3"),
        "bom_then_valid.vnnlib": ("\ufeff" + base, "any"),
        "unicode_nbsp_separators.vnnlib": (base.replace(" ", "\u00a0"), "any"),
        "unicode_identifier.vnnlib": (base + "(assert (>= Y_é Y_1))\n", "3"),
        "unicode_arabic_digit.vnnlib": (base.replace("X_3", "X_\u0663"), "3|4"),
        "fullwidth_parenthesis.vnnlib": (base + "（assert (>= Y_0 Y_1))\n", "3|4"),
        "mixes_inputs_and_outputs.vnnlib": (base + "(assert (<= (+ X_0 Y_0) 1.0))\n", "4"),
        "input_unbounded.vnnlib": (decl + "(assert (>= Y_0 Y_1))\n", "3"),
        "only_declarations.vnnlib": (decl, "3"),
        "real_sort_missing.vnnlib": (base.replace("X_0 Real", "X_0", 1), "3"),
        "int_sort.vnnlib": (base.replace("X_0 Real", "X_0 Int", 1), "4"),
        "crlf_line_ends.vnnlib": (base.replace("\n", "\r\n"), "any"),
    }


def main() -> None:
    models, props = CORPUS / "models", CORPUS / "properties"
    for folder in (models, props):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    (CORPUS / BASE_PROPERTY).write_text(mu.base_property())
    rows = []
    for name, (model, expect) in model_entries().items():
        data = model if isinstance(model, bytes) else model.SerializeToString()
        (models / name).write_bytes(data)
        rows.append((f"models/{name}", BASE_PROPERTY if not name.startswith("digits") else DIGITS_SPEC, expect))
    for name, (text, expect) in property_entries().items():
        (props / name).write_bytes(text.encode("utf-8") if name != "binary_junk.vnnlib" else text.encode("latin-1"))
        rows.append(("tiny.onnx", f"properties/{name}", expect))
    (CORPUS / "tiny.onnx").write_bytes(mu.mlp_model().SerializeToString())
    with open(CORPUS / "MANIFEST.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["model", "property", "expect"])
        writer.writerows(rows)
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"{len(rows)} corpus entries, {total} bytes in {CORPUS}")


if __name__ == "__main__":
    main()
