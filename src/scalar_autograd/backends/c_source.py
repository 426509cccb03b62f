"""C99 source of a program: its value, gradient and Jacobian as plain C functions.

:func:`generate_c` turns a forward program (``f.program`` of a
:class:`~scalar_autograd.CompiledFunction`) into one self-contained C99 file, for a
program ``NAME`` with ``n`` params (``x``), ``k`` runtime inputs and ``m`` outputs:

==========================================================  =============================
``double NAME(const double *x)``                            output 0
``void NAME_values(const double *x, double *values)``       the ``m`` outputs
``double NAME_value_and_grad(const double *x, double *g)``  output 0; ``g``: its gradient
``void NAME_jacobian(const double *x, double *values,``     the ``m`` outputs and the
``double *jac)``                                            ``m x n`` Jacobian, row-major
==========================================================  =============================

With runtime inputs (``k > 0``) every function takes ``const double *inputs`` right
after ``x``. ``NAME_N_PARAMS``, ``NAME_N_INPUTS`` and ``NAME_N_OUTPUTS`` are defined as
macros. Output arrays must not overlap ``x`` or ``inputs``.

The derivative programs are the ones the runtime compiles (:mod:`scalar_autograd.ir.
autodiff`, lowered by :mod:`scalar_autograd.ir.passes`): the Jacobian by reverse mode
when ``m <= n``, else by forward mode, as :meth:`CompiledFunction.jacobian
<scalar_autograd.CompiledFunction.jacobian>` computes it; the gradient of output 0 by
reverse mode (the same bits as ``value_and_grad`` of a one-output function; with several
outputs it may differ from row 0 of a forward-mode Jacobian in the last bits). Each
lowered node becomes one ``const double`` local, its expression read off the op table's
``lower`` field as in :func:`scalar_autograd.native.emitter.instruction`: an infix symbol
(``+`` folds left to right, comparisons give ``1.0``/``0.0``, ``select`` is a ternary),
or a libm call by name. A program of more than :data:`CHUNK` instructions is split into
functions of at most that many, whose shared values go through a local array (on the
stack, one double per value a later chunk reads), so ``gcc -O2`` compiles it in time
linear in its size.

The file holds only generated names, numbers and the validated ``NAME``
(:func:`check_c_name`): never a label or any other user string.

Example:
    >>> import scalar_autograd as sa
    >>> x, y = sa.Value(1.0), sa.Value(2.0)
    >>> f = sa.compile(x * y + sa.sin(x), [x, y])
    >>> source = generate_c(f.program, "f")
    >>> for line in source.splitlines():
    ...     if line.startswith(("double ", "void ")):
    ...         print(line)
    double f(const double *x)
    void f_values(const double *x, double *values)
    double f_value_and_grad(const double *x, double *grad)
    void f_jacobian(const double *x, double *values, double *jac)
    >>> kernel = source.split("static void f__k0(")[1].split("}")[0]
    >>> for line in kernel.splitlines():
    ...     if line.startswith("    const"):
    ...         print(line.strip())
    const double v0 = x[0];
    const double v1 = x[1];
    const double v2 = v0 * v1;
    const double v3 = sin(v0);
    const double v4 = v2 + v3;
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scalar_autograd.ir import autodiff
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Program, dead_code_elimination
from scalar_autograd.ops import OPS_BY_NAME

CHUNK = 250
"""Most instructions in one generated C function. ``gcc -O2``'s time grows faster than
linearly with a function's size, linearly with the number of functions: measured for a
program of 8,100 instructions (its four functions hold 32,000), 2.4 s of gcc as chunks
of 250, 3.7 s as chunks of 1,000, 13 s unchunked; four times the program, 9.9 s."""

MAX_NAME_LENGTH = 64
"""Longest accepted C name prefix (``NAME_value_and_grad`` adds 15 characters)."""

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

_C_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while
    alignas alignof bool constexpr false nullptr static_assert thread_local true typeof
    typeof_unqual asm fortran
""".split())
"""C99 keywords, the C23 ones, and common extensions (``asm``, ``fortran``)."""

_CPP_KEYWORDS = frozenset("""
    and and_eq bitand bitor catch char8_t char16_t char32_t class co_await co_return
    co_yield compl concept const_cast consteval constinit decltype delete dynamic_cast
    explicit export friend mutable namespace new noexcept not not_eq operator or or_eq
    private protected public reinterpret_cast requires static_cast template this throw try
    typeid typename using virtual wchar_t xor xor_eq
""".split())
"""C++ keywords: the header declares the functions ``extern "C"`` for C++ callers."""

C99_MATH_FUNCTIONS = frozenset("""
    acos asin atan atan2 cos sin tan acosh asinh atanh cosh sinh tanh exp exp2 expm1
    frexp ilogb ldexp log log10 log1p log2 logb modf scalbn scalbln cbrt fabs hypot pow
    sqrt erf erfc lgamma tgamma ceil floor nearbyint rint lrint llrint round lround llround
    trunc fmod remainder remquo copysign nan nextafter nexttoward fdim fmax fmin fma
""".split())
"""The functions of C99's ``<math.h>`` (each also with an ``f`` and an ``l`` suffix):
the only functions a generated file calls."""

_HEADER_NAMES = frozenset("""
    HUGE_VAL HUGE_VALF HUGE_VALL INFINITY NAN FP_INFINITE FP_NAN FP_NORMAL FP_SUBNORMAL
    FP_ZERO FP_FAST_FMA FP_FAST_FMAF FP_FAST_FMAL FP_ILOGB0 FP_ILOGBNAN MATH_ERRNO
    MATH_ERREXCEPT math_errhandling float_t double_t fpclassify isfinite isinf isnan
    isnormal signbit isgreater isgreaterequal isless islessequal islessgreater isunordered
    DECIMAL_DIG FLT_EVAL_METHOD FLT_RADIX FLT_ROUNDS errno assert main
""".split())
"""Other names ``<math.h>`` and ``<float.h>`` declare, and a few that must stay free."""

_RESERVED_PREFIXES = ("FLT_", "DBL_", "LDBL_", "M_", "FP_")


def _is_reserved(name: str) -> bool:
    """Whether ``name`` is a keyword or a name the included headers declare."""
    if name in _C_KEYWORDS or name in _CPP_KEYWORDS or name in _HEADER_NAMES:
        return True
    if name.startswith(_RESERVED_PREFIXES):
        return True
    return name in C99_MATH_FUNCTIONS or (name[-1] in "fl" and name[:-1] in C99_MATH_FUNCTIONS)


def check_c_name(name: object, argument: str = "name") -> str:
    """``name`` if it can prefix the generated C functions; else an error naming
    ``argument``.

    The rule: a C identifier (``[A-Za-z_][A-Za-z0-9_]*``) of at most
    :data:`MAX_NAME_LENGTH` characters that does not start with ``_`` (reserved for the
    implementation at file scope), does not contain ``__`` (kept for the generated
    helpers), and is neither a C or C++ keyword nor a name of ``<math.h>`` or
    ``<float.h>``.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: it breaks the rule (the message echoes it).

    Example:
        >>> check_c_name("rosenbrock")
        'rosenbrock'
        >>> check_c_name("sin")
        Traceback (most recent call last):
        ...
        ValueError: name must be a C identifier that is not a C or C++ keyword nor a name \
of <math.h> or <float.h>; got 'sin'
    """
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str (a C identifier); got "
                        f"{type(name).__name__} {name!r:.80}")
    if not _IDENTIFIER.match(name) or len(name) > MAX_NAME_LENGTH or "__" in name:
        raise ValueError(f"{argument} must be a C identifier: a letter, then letters, digits "
                         f"and single underscores ([A-Za-z][A-Za-z0-9_]*, no '__'), at most "
                         f"{MAX_NAME_LENGTH} characters; got {name!r:.100}")
    if _is_reserved(name):
        raise ValueError(f"{argument} must be a C identifier that is not a C or C++ keyword "
                         f"nor a name of <math.h> or <float.h>; got {name!r}")
    return name


# ----------------------------------------------------------------------------- literals

_pack = struct.Struct("<d").pack
_unpack_q = struct.Struct("<Q").unpack


def literal(value: float) -> str:
    """``value`` as a C ``double`` expression denoting exactly that double.

    Integers below 2**53 in magnitude are written in decimal (``3.0``), other finite
    numbers as hexadecimal floating constants (exact by C99 6.4.4.2), infinities as
    ``INFINITY``, NaN as ``NAN`` (``-NAN`` when its sign bit is set; other payload bits
    are not kept). Negative numbers are parenthesised, so a literal is always a primary
    expression.

    Example:
        >>> literal(2.0), literal(0.1), literal(-0.0), literal(float("-inf"))
        ('2.0', '0x1.999999999999ap-4', '(-0.0)', '(-INFINITY)')
    """
    negative = _unpack_q(_pack(value))[0] >> 63 == 1
    if math.isnan(value):
        text = "NAN"
    elif math.isinf(value):
        text = "INFINITY"
    elif value.is_integer() and abs(value) < 2.0 ** 53:
        text = f"{abs(value):.1f}"
    else:
        text = float.hex(abs(value))
    return f"(-{text})" if negative else text


# ----------------------------------------------------------------------------- expressions

_COMPARE = frozenset({"==", "!=", ">", "<", ">=", "<="})


@dataclass(frozen=True)
class Helper:
    """A static C function a lowering needs beyond ``<math.h>`` (emitted once per file)."""

    name: str
    definition: str


HELPERS: dict[str, Helper] = {
    # numerics.copysign: a NaN sign source counts as positive (the llvm backend emits the
    # same select; C's copysign would pass on the accidental sign of a NaN)
    "copysign": Helper("sa__copysign", """\
static double sa__copysign(double a, double b)
{
    /* |a| with the sign of b; a NaN b counts as positive (as scalar_autograd does) */
    return isnan(b) ? fabs(a) : copysign(a, b);
}
"""),
    # numerics.pow: exponents 2 and -1 are a*a and 1/a, correctly rounded (the llvm
    # backend emits the same selects; libm's pow is off by an ulp there at times)
    "pow": Helper("sa__pow", """\
static double sa__pow(double a, double b)
{
    /* C99 pow, except pow(a, 2) = a*a and pow(a, -1) = 1/a (as scalar_autograd does) */
    return b == 2.0 ? a * a : b == -1.0 ? 1.0 / a : pow(a, b);
}
"""),
}
"""libm names of the op table whose C spelling is a helper, by the ``lower`` symbol."""


def expression(kind: str, args: Sequence[str], helpers: set[str]) -> str:
    """The C expression of op ``kind`` on the operand expressions ``args``.

    ``args`` are primary expressions (local names, :func:`literal` constants); the op's
    ``lower`` field in the op table decides the spelling, as in
    :func:`scalar_autograd.native.emitter.instruction`. ``helpers`` collects the
    ``lower`` symbols whose call goes through a :data:`HELPERS` function.

    Raises:
        ValueError: an op that is not lowered (an expansion), an unknown infix symbol,
            or a call to a function ``<math.h>`` does not declare.

    Example:
        >>> used: set[str] = set()
        >>> expression("where", ["v1", "v2", "(-1.0)"], used), expression("le", ["a", "b"], used)
        ('v1 != 0.0 ? v2 : (-1.0)', 'a <= b ? 1.0 : 0.0')
        >>> expression("copysign", ["a", "b"], used), sorted(used)
        ('sa__copysign(a, b)', ['copysign'])
    """
    lowering = OPS_BY_NAME[kind].lower
    sym = lowering.symbol
    if lowering.kind == "infix":
        if sym == "+":
            return " + ".join(args) if args else "0.0"   # C's + folds left to right
        if sym in ("-", "*", "/"):
            return f"{args[0]} {sym} {args[1]}"
        if sym == "neg":
            return f"-{args[0]}"
        if sym == "select":     # nan counts as true (llvm: fcmp une)
            return f"{args[0]} != 0.0 ? {args[1]} : {args[2]}"
        if sym in _COMPARE:     # C's comparisons are IEEE's: only != holds for a nan
            return f"{args[0]} {sym} {args[1]} ? 1.0 : 0.0"
        raise ValueError(f"unknown infix symbol {sym!r} of op {kind}")
    if lowering.kind == "call":
        helper = HELPERS.get(sym)
        if helper is not None:
            helpers.add(sym)
            return f"{helper.name}({', '.join(args)})"
        if sym not in C99_MATH_FUNCTIONS:
            raise ValueError(f"op {kind} calls {sym!r}, which C99's <math.h> does not "
                             f"declare; add a helper to HELPERS")
        return f"{sym}({', '.join(args)})"
    raise ValueError(f"op {kind} must be lowered before code generation")


# ----------------------------------------------------------------------------- kernels

_KERNEL_PARAMS = "const double *x, const double *inputs, double *values, double *derivs"
_CHUNK_PARAMS = "const double *x, const double *inputs, double *s"


def _kernel(program: Program, name: str, helpers: set[str]) -> str:
    """``static void name(x, inputs, values, derivs)``: the outputs of a lowered program.

    Outputs go to ``values`` (the first ``n_values``) and ``derivs``. Every read of ``x``
    and ``inputs`` happens before the first store of an output. A program of more than
    :data:`CHUNK` instructions is computed by functions ``name__c0``, ``name__c1``, ...
    of at most that many, which pass the values a later chunk reads, and the outputs,
    through the kernel's local array ``s``; the kernel then copies the outputs out.
    """
    nodes = program.nodes
    n_params, n_values = program.n_params, program.n_values
    ops = [i for i, (kind, _) in enumerate(nodes) if kind != "input" and kind != "const"]
    targets = [f"values[{k}]" if k < n_values else f"derivs[{k - n_values}]"
               for k in range(len(program.outputs))]

    def read(i: int) -> str:
        """Where input node ``i`` reads its slot."""
        slot = nodes[i][1]
        return f"x[{slot}]" if slot < n_params else f"inputs[{slot - n_params}]"

    def operand(a: int) -> str:
        kind, payload = nodes[a]
        return literal(payload) if kind == "const" else f"v{a}"

    def compute(i: int) -> str:
        kind, payload = nodes[i]
        args = [operand(a) for a in payload]
        return f"    const double v{i} = {expression(kind, args, helpers)};"

    unused = [f"    (void){p};" for p, used in (
        ("x", n_params > 0), ("inputs", program.n_inputs > 0), ("values", n_values > 0),
        ("derivs", program.n_derivs > 0)) if not used]
    if len(ops) <= CHUNK:
        needed = set(program.outputs)
        for i in ops:
            needed.update(nodes[i][1])
        body = [f"    const double v{i} = {read(i)};" for i, (kind, _) in enumerate(nodes)
                if kind == "input" and i in needed]
        body += [compute(i) for i in ops]
        body += [f"    {t} = {operand(o)};" for t, o in zip(targets, program.outputs)]
        return _function(f"static void {name}({_KERNEL_PARAMS})", unused + body)

    chunks = [ops[start:start + CHUNK] for start in range(0, len(ops), CHUNK)]
    chunk_of = [-1] * len(nodes)   # inputs and constants: -1
    for c, members in enumerate(chunks):
        for i in members:
            chunk_of[i] = c
    slot: dict[int, int] = {}      # node -> index in s: read by a later chunk, or output
    for i in ops:
        for a in nodes[i][1]:
            if chunk_of[a] >= 0 and chunk_of[a] != chunk_of[i] and a not in slot:
                slot[a] = len(slot)
    for o in program.outputs:
        if nodes[o][0] != "const" and o not in slot:
            slot[o] = len(slot)
    texts = []
    for c, members in enumerate(chunks):
        body = ["    (void)x;", "    (void)inputs;"]
        if c == 0:   # outputs that are inputs: read with the other inputs
            body += [f"    s[{slot[o]}] = {read(o)};" for o in dict.fromkeys(program.outputs)
                     if nodes[o][0] == "input"]
        local: set[int] = set()
        for i in members:
            for a in nodes[i][1]:
                if chunk_of[a] != c and a not in local and nodes[a][0] != "const":
                    local.add(a)
                    source = read(a) if nodes[a][0] == "input" else f"s[{slot[a]}]"
                    body.append(f"    const double v{a} = {source};")
            body.append(compute(i))
            if i in slot:
                body.append(f"    s[{slot[i]}] = v{i};")
        texts.append(_function(f"static SA__NOINLINE void {name}__c{c}({_CHUNK_PARAMS})",
                               body))
    body = [f"    double s[{len(slot)}];", *unused]
    body += [f"    {name}__c{c}(x, inputs, s);" for c in range(len(chunks))]
    body += [f"    {t} = {f's[{slot[o]}]' if o in slot else operand(o)};"
             for t, o in zip(targets, program.outputs)]
    texts.append(_function(f"static void {name}({_KERNEL_PARAMS})", body))
    return "\n".join(texts)


def _function(signature: str, body: Iterable[str]) -> str:
    return f"{signature}\n{{\n" + "".join(line + "\n" for line in body) + "}\n"


# ----------------------------------------------------------------------------- programs


def _first_output(program: Program) -> Program:
    """``program`` computing output 0 only."""
    return dead_code_elimination(Program(program.nodes, program.outputs[:1],
                                         program.n_params, program.n_inputs, 1))


def _kernel_programs(program: Program) -> dict[str, Program]:
    """The lowered program behind each public function, by its suffix.

    The Jacobian's mode is the runtime's (``sa.compile``'s value-and-derivative kernel):
    reverse mode for at most as many outputs as params, else forward mode. With one
    output, output 0's programs are the whole function's.
    """
    jacobian_mode = autodiff.reverse if program.n_values <= program.n_params \
        else autodiff.forward
    values = lower(program)
    jacobian = jacobian_mode(program, lower=True)
    if program.n_values == 1:
        return {"": values, "_values": values, "_value_and_grad": jacobian,
                "_jacobian": jacobian}
    first = _first_output(program)
    return {"": lower(first), "_values": values,
            "_value_and_grad": autodiff.reverse(first, lower=True), "_jacobian": jacobian}


@dataclass(frozen=True)
class CFunction:
    """The C text of one program under one name (see :func:`generate_c`).

    Attributes:
        name: the validated name prefix.
        n_params, n_inputs, n_outputs: the sizes (``NAME_N_PARAMS``, ...).
        definitions: the static kernels and the four public functions.
        helpers: the :data:`HELPERS` keys the definitions call.
    """

    name: str
    n_params: int
    n_inputs: int
    n_outputs: int
    definitions: str
    helpers: frozenset[str]

    def signatures(self) -> list[str]:
        """The four public functions' declarators (no ``;``), in order."""
        n, u = self.name, ", const double *inputs" if self.n_inputs else ""
        return [f"double {n}(const double *x{u})",
                f"void {n}_values(const double *x{u}, double *values)",
                f"double {n}_value_and_grad(const double *x{u}, double *grad)",
                f"void {n}_jacobian(const double *x{u}, double *values, double *jac)"]

    def macros(self) -> str:
        """``#define NAME_N_PARAMS ...`` and the other sizes, one per line."""
        return "".join(f"#define {self.name}_{key} {value}\n" for key, value in (
            ("N_PARAMS", self.n_params), ("N_INPUTS", self.n_inputs),
            ("N_OUTPUTS", self.n_outputs)))

    def identifiers(self) -> list[str]:
        """Every name with external linkage or a macro this function defines."""
        n = self.name
        return [n, f"{n}_values", f"{n}_value_and_grad", f"{n}_jacobian",
                f"{n}_N_PARAMS", f"{n}_N_INPUTS", f"{n}_N_OUTPUTS"]

    def summary(self) -> str:
        """A comment line: the sizes and the argument conventions."""
        inputs = f", inputs[{self.n_inputs}]" if self.n_inputs else ""
        return (f"/* {self.name}: x[{self.n_params}]{inputs} -> {self.n_outputs} "
                f"output{'s' if self.n_outputs != 1 else ''}; {self.name}() returns output "
                f"0, jac is {self.n_outputs} x {self.n_params} row-major */\n")


def translate(program: Program, name: str) -> CFunction:
    """The C functions of ``program`` named ``name`` (see :func:`generate_c`).

    Raises:
        TypeError: ``program`` is not a Program, or ``name`` not a str.
        ValueError: ``name`` is not an acceptable C name (:func:`check_c_name`), or
            ``program`` is not a forward program with at least one output.
    """
    check_c_name(name)
    if not isinstance(program, Program):
        raise TypeError(f"program must be a Program; got {type(program).__name__}")
    if program.n_values < 1 or program.n_derivs:
        raise ValueError(f"program must be a forward program (at least one value output "
                         f"and no derivative outputs, as f.program); got {program.n_values} "
                         f"values and {program.n_derivs} derivatives")
    helpers: set[str] = set()
    kernels: dict[bytes, str] = {}   # programs by structure: equal ones share a kernel
    texts: list[str] = []
    kernel_of: dict[str, str] = {}   # public function suffix -> its kernel
    for suffix, lowered in _kernel_programs(program).items():
        key = lowered.key()
        if key not in kernels:
            kernels[key] = f"{name}__k{len(kernels)}"
            texts.append(_kernel(lowered, kernels[key], helpers))
        kernel_of[suffix] = kernels[key]
    n_values = program.n_values
    u = ", inputs" if program.n_inputs else ", 0"
    first, values, grad, jac = CFunction(name, program.n_params, program.n_inputs,
                                         n_values, "", frozenset()).signatures()
    texts.append(_function(first, ["    double value;",
                                   f"    {kernel_of['']}(x{u}, &value, 0);",
                                   "    return value;"]))
    texts.append(_function(values, [f"    {kernel_of['_values']}(x{u}, values, 0);"]))
    texts.append(_function(grad, ["    double value;",
                                  f"    {kernel_of['_value_and_grad']}(x{u}, &value, grad);",
                                  "    return value;"]))
    texts.append(_function(jac, [f"    {kernel_of['_jacobian']}(x{u}, values, jac);"]))
    return CFunction(name, program.n_params, program.n_inputs, n_values, "\n".join(texts),
                     frozenset(helpers))


# ----------------------------------------------------------------------------- files

CONTRACT = """\
/*
 * Generated by scalar_autograd; do not edit.
 *
 * Numerics: IEEE-754 double precision, every operation rounded to double in the
 * order written, the functions of <math.h> (libm) and nothing else: no allocation,
 * no global state (the functions are reentrant and thread-safe). The results are
 * those of scalar_autograd's llvm backend, bit for bit where both call the same libm.
 * Output arrays must not overlap x or inputs.
 *
 * Compile with, e.g.:  cc -O2 -std=c99 -ffp-contract=off -c FILE.c  (link with -lm)
 *
 * These options break that contract:
 *   -ffast-math, -Ofast       all of the below, and reassociation of sums
 *   -ffinite-math-only        assumes no nan or inf: isnan(), where() on a nan
 *                             condition, min/max/relu of nan and inf results go wrong
 *   -fno-signed-zeros         -0.0 may become 0.0 (copysign, 1/x, atan2 differ)
 *   -ffp-contract=fast        fuses a*b+c into one fma, rounded once instead of twice
 *                             (gcc's default outside -std=c99: pass -ffp-contract=off;
 *                             a pragma below also turns it off for gcc, clang, MSVC)
 *   -funsafe-math-optimizations, -fassociative-math, -freciprocal-math
 *   x87 arithmetic (FLT_EVAL_METHOD 2: 32-bit x86 without -msse2 -mfpmath=sse)
 * The file refuses to compile under -ffast-math, -ffinite-math-only and x87
 * excess precision.
 */
"""
"""The comment that opens every generated file: the numerics contract."""

_PRELUDE = """\
#include <float.h>
#include <math.h>

#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "compiled with -ffast-math or -ffinite-math-only: nan, inf and -0.0 would break"
#endif
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != 1
#error "doubles are evaluated in excess precision (FLT_EVAL_METHOD): use SSE2 arithmetic"
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize ("fp-contract=off")
#elif defined(_MSC_VER)
#pragma fp_contract (off)
#else
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__GNUC__)
#define SA__NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SA__NOINLINE __declspec(noinline)
#else
#define SA__NOINLINE
#endif
"""


def file_head(helpers: Iterable[str], includes: Sequence[str] = ()) -> str:
    """The start of a generated C file: :data:`CONTRACT`, the includes (then the
    ``#include "..."`` lines of ``includes``, names the caller has validated), the
    checks and pragmas of the contract, and the :data:`HELPERS` named in ``helpers``."""
    local = "".join(f'#include "{name}"\n' for name in includes)
    helper_text = "".join("\n" + HELPERS[h].definition for h in sorted(set(helpers)))
    return CONTRACT + "\n" + _PRELUDE + ("\n" + local if local else "") + helper_text


def generate_c(program: Program, name: str) -> str:
    """Self-contained C99 source of ``program`` (a forward program, ``f.program``).

    It defines ``NAME`` (output 0), ``NAME_values`` (all outputs),
    ``NAME_value_and_grad`` (output 0 and its gradient) and ``NAME_jacobian`` (all
    outputs and the row-major Jacobian) for ``NAME = name``, with ``const double
    *inputs`` after ``x`` when the program has runtime inputs, and the macros
    ``NAME_N_PARAMS``, ``NAME_N_INPUTS``, ``NAME_N_OUTPUTS``; see the module docstring
    and :data:`CONTRACT` for the numerics (compile with ``-ffp-contract=off``, never
    with ``-ffast-math``). Several functions in one file, with a header:
    :func:`scalar_autograd.export_c`.

    Args:
        program: the forward program: its outputs are the function's values.
        name: the C name prefix (:func:`check_c_name`).

    Raises:
        TypeError: ``program`` is not a Program or ``name`` not a str.
        ValueError: ``name`` is not an acceptable C name, or ``program`` has derivative
            outputs or no outputs.

    Example:
        >>> import scalar_autograd as sa
        >>> p, t = sa.Value(1.0), sa.Value(0.0)
        >>> f = sa.compile(sa.relu(p - t), [p], inputs=[t])
        >>> source = generate_c(f.program, "hinge")
        >>> "double hinge_value_and_grad(const double *x, const double *inputs, " \\
        ...     "double *grad)" in source
        True
        >>> generate_c(f.program, "bad name")
        Traceback (most recent call last):
        ...
        ValueError: name must be a C identifier: a letter, then letters, digits and single \
underscores ([A-Za-z][A-Za-z0-9_]*, no '__'), at most 64 characters; got 'bad name'
    """
    function = translate(program, name)
    return (file_head(function.helpers) + "\n" + function.summary() + function.macros()
            + "\n" + function.definitions)
