"""Repeated structure in a program: terms of one shape, found once, run as row kernels.

Real objectives are sums of many terms of one shape: a spring term per mesh edge, a
loss per training sample, a residual per observation. :func:`find_structure` finds
them in a traced :class:`~scalar_autograd.ir.program.Program`:

1. **Terms.** From each differentiated output, the walk descends through the
   *reduction spine* (``sum``, ``mean``, ``add``, ``sub``, ``neg``, and ``mul`` or
   ``div`` with one of those as an argument, as in ``0.5 * sum(...)``); every argument
   of a spine node that is neither a spine node nor a leaf is a term, and so is a spine
   node whose shape repeats (a per-sample ``a - b``). With :func:`group_outputs`, the
   outputs themselves are the terms: residuals.
2. **Shapes.** Each term's *cone* (every node it reads, down to the program's inputs and
   constants) is walked once in canonical order (post-order, arguments in order) into a
   structural key: each op and the positions of its arguments (a commutative op's in
   the order of their shapes, :func:`_shapes`); each param or runtime input by its slot
   in first-use order (so a param used twice in one term and two params used once are
   different shapes); each use of a constant as a per-row value, except a ``pow``
   exponent, which is part of the key (terms differing in an exponent are never
   merged). Terms with equal keys are one :class:`TermGroup`. Keys are compared whole
   (they are dict keys), never by hash alone. Only the first term of a key is walked in
   Python; the others are matched against its walk at once, with numpy (:func:`_match`).
3. **Row programs.** A group's program is the first term's cone with params and inputs
   renumbered to the term's slots, constants that are bitwise equal in every row kept
   as compile-time constants, and the others lifted to per-row inputs. Its rows are the
   *index tables*: which global params (``param_index``) and runtime inputs
   (``input_index``) each row reads, and its per-row constants (``data``).
4. **Reductions** (:class:`Reduction`) are the sums of terms (``sum``, ``mean``, a
   chain of ``+``), also mixing in params, inputs and constants, folded left to right
   as the ``sum`` op adds; a few terms of rare shapes in such a sum get row kernels of
   their own (:func:`_stragglers`) so the sum still folds.
5. **The outer program** is the original with every reduction and every other term it
   reads replaced by a new param slot: it computes the outputs from the params, those
   values and the inputs, in the original order, so the values agree bit for bit with
   the flat program.

A group is kept when it has at least :data:`MIN_ROWS` rows of at least
:data:`MIN_TERM_SIZE` instructions; the outermost (largest) terms are chosen first,
and terms nested in a chosen group's terms are not grouped again. A term recomputes
everything in its cone, also nodes the flat program shares between terms (the two
triangle normals a hinge reads are shared with the neighbouring hinges): a group whose
rows would recompute more than :data:`MAX_RECOMPUTE` times the flat program's work is
left in the outer program.

Example:
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> xs = [sa.Value(float(i)) for i in range(40)]
    >>> loss = sa.sum([(xs[i] - xs[i + 1]) ** 2 * 0.5 for i in range(39)])
    >>> program, _ = trace([loss], xs)
    >>> s = find_structure(program, min_program_size=0)
    >>> [(g.n_rows, g.program.n_instructions) for g in s.groups]
    [(39, 3)]
    >>> s.groups[0].param_index[:2].tolist()
    [[0, 1], [1, 2]]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, partial
from typing import Any

import numpy as np

from scalar_autograd.ir.program import COMMUTATIVE, Builder, Program, _layout, const_key

SPINE = frozenset({"sum", "mean", "add", "sub", "neg", "mul", "div"})
"""Ops the term search descends through from an output (see the module docstring)."""

MIN_ROWS = 8
"""Fewest terms of one shape worth a row kernel."""

MIN_TERM_SIZE = 1
"""Fewest instructions in a term worth a row kernel."""

MAX_RECOMPUTE = 2.0
"""A group's rows may do at most this many times the flat program's instructions."""

MIN_PROGRAM_SIZE = 2_000
"""Programs with fewer instructions are compiled flat: a row kernel saves nothing."""

_LEAVES = ("input", "const")
_SUMS = frozenset({"sum", "mean", "add", "sub", "neg"})


@dataclass(frozen=True)
class TermGroup:
    """Terms of one shape: one row program and its index tables.

    Attributes:
        program: the row program: params are the term's param slots (first use),
            inputs its runtime-input slots, then its per-row constants.
        roots: ``(N,)`` node ids of the terms in the original program (for
            :func:`group_outputs`: the output indices).
        param_index: ``(N, n_params of program)`` global param index per row and slot.
        input_index: ``(N, s_u)`` global runtime-input index per row and slot.
        data: ``(N, k)`` the per-row constants.
        cone_size: instructions of one term in the original program (work per row).
    """

    program: Program
    roots: np.ndarray
    param_index: np.ndarray
    input_index: np.ndarray
    data: np.ndarray
    cone_size: int

    @property
    def n_rows(self) -> int:
        """Number of terms."""
        return int(self.roots.shape[0])

    @cached_property
    def uniform_params(self) -> bool:
        """Every row reads the same params in the same slots (a dense model's weights)."""
        p = self.param_index
        return bool(p.shape[0] == 0 or np.all(p == p[:1]))


TERM, PARAM, INPUT, CONST = 0, 1, 2, 3
"""What an element of a :class:`Reduction` is: a term value, a param, a runtime input
or a constant."""


@dataclass(frozen=True)
class Reduction:
    """A sum folded left to right (as the ``sum`` op and Python's ``sum()`` add) before
    the outer program runs: of terms mostly, and of params, inputs and constants (a
    term that folded to a constant, the ``0`` Python's ``sum()`` starts from).

    Attributes:
        source: ``(k,)`` per element, :data:`TERM`, :data:`PARAM`, :data:`INPUT` or
            :data:`CONST`, in the order they are added.
        index: ``(k,)`` per element, the term (into all groups' rows, in group order),
            param, input or constant (into ``constants``) it is.
        constants: the constants' values.
    """

    source: np.ndarray
    index: np.ndarray
    constants: np.ndarray

    def of(self, kind: int) -> np.ndarray:
        """The indices of the elements of one kind (``TERM``, ...), in order."""
        return self.index[self.source == kind]


@dataclass(frozen=True)
class Structure:
    """A program split into term groups, reductions and an outer program.

    The term values ``t`` (every group's rows, group after group: row ``r`` of group
    ``g`` is ``t[term_offset[g] + r]``) feed the outer program two ways: the sums of
    many terms (a ``sum``, ``mean`` or a chain of ``+`` over terms only) as
    :class:`Reduction` values, and any other use of a term directly.

    Attributes:
        outer: the original program with those sums and terms replaced by param slots:
            params ``0..n-1`` are the original params, ``n + k`` is ``t[direct[k]]``, and
            ``n + len(direct) + j`` is the value of ``reductions[j]``; inputs are the
            original inputs.
        groups: the term groups.
        term_offset: per group, the index of its first row in ``t``.
        direct: ``(d,)`` the terms the outer program reads one by one.
        reductions: the sums of terms.
        n_params: the original program's params.
    """

    outer: Program
    groups: tuple[TermGroup, ...]
    term_offset: tuple[int, ...]
    direct: np.ndarray
    reductions: tuple[Reduction, ...]
    n_params: int

    @property
    def n_terms(self) -> int:
        """Term values the groups compute."""
        return sum(g.n_rows for g in self.groups)


class _Cone:
    """One term's canonical walk: its key, leaves in first-use order and constants.

    A constant is a leaf of its own at each use (the program shares equal constants
    between unrelated uses: a data value 2.0 and an exponent 2.0 are one node), so two
    terms differing only in their data have one key."""

    __slots__ = ("key", "params", "inputs", "consts", "const_nodes", "size", "nodes",
                 "const_positions")

    def __init__(self, nodes: Sequence[tuple[str, Any]], root: int, n_params: int,
                 shapes: Sequence[int]) -> None:
        position: dict[int, int] = {}
        key: list[object] = []
        params: dict[int, int] = {}
        inputs: dict[int, int] = {}
        consts: list[float] = []
        const_nodes: list[int] = []
        order: list[int] = []
        const_positions: list[int] = []
        size = 0
        if nodes[root][0] == "const":
            stack = []
            key.append("c")
            consts.append(nodes[root][1])
            const_nodes.append(root)
            const_positions.append(0)
            order.append(root)
        else:
            stack = [root]
        while stack:
            i = stack[-1]
            if i in position:
                stack.pop()
                continue
            kind, payload = nodes[i]
            if kind == "input":
                slot = payload
                table = params if slot < n_params else inputs
                local = table.setdefault(slot, len(table))
                key.append(("p" if slot < n_params else "u", local))
            else:
                args = payload
                if kind in COMMUTATIVE and shapes[args[0]] > shapes[args[1]]:
                    args = (args[1], args[0])
                pending = [a for a in args if a not in position and nodes[a][0] != "const"]
                if pending:
                    stack.extend(reversed(pending))
                    continue
                where_list = []
                for a in args:
                    if nodes[a][0] == "const":   # a leaf of its own at each use
                        where_list.append(len(order))
                        key.append("c")
                        consts.append(nodes[a][1])
                        const_nodes.append(a)
                        const_positions.append(len(order))
                        order.append(a)
                    else:
                        where_list.append(position[a])
                where = tuple(where_list)
                if kind == "pow" and nodes[args[1]][0] == "const":
                    key.append((kind, where, const_key(nodes[args[1]][1])))
                else:
                    key.append((kind, where))
                size += 1
            stack.pop()
            position[i] = len(order)
            order.append(i)
        self.key = tuple(key)
        self.params = list(params)
        self.inputs = list(inputs)
        self.consts = consts
        self.const_nodes = const_nodes
        self.const_positions = const_positions
        self.size = size
        self.nodes = order


def _shapes(nodes: Sequence[tuple[str, Any]]) -> list[int]:
    """A structural id per node, blind to which leaf is which: the canonical order of a
    commutative op's arguments in a term's key (the builder keeps them in the order of
    their first emission, which another term may have decided)."""
    interned: dict[object, int] = {"input": 0, "const": 1}
    shapes = [0] * len(nodes)
    for i, (kind, payload) in enumerate(nodes):
        if kind == "input" or kind == "const":
            shapes[i] = interned[kind]
            continue
        children = [shapes[a] for a in payload]
        if kind in COMMUTATIVE and children[0] > children[1]:
            children.reverse()
        key: tuple[object, ...] = (kind, *children)
        if kind == "pow" and nodes[payload[1]][0] == "const":
            key = (*key, const_key(nodes[payload[1]][1]))
        found = interned.get(key)
        if found is None:
            found = interned[key] = len(interned)
        shapes[i] = found
    return shapes


def _spine_terms(nodes: Sequence[tuple[str, Any]], outputs: Sequence[int],
                 shapes: Sequence[int], min_rows: int) -> list[int]:
    """The terms below the outputs' reduction spines, in first-seen order.

    A spine node whose shape at least ``min_rows`` nodes of the program share is a term
    as well (a per-sample ``log(1 + exp(z)) - y * z`` is one term), and the walk goes on
    below it (sums of batches of terms: if the batches differ, their terms group):
    :func:`find_structure` keeps the outermost groups."""
    counts = Counter(shapes)
    roots = set(outputs)
    seen: set[int] = set()
    terms: dict[int, None] = {}
    stack = list(reversed(outputs))
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        kind, payload = nodes[i]
        if kind in _LEAVES:
            continue
        if kind in _SUMS or kind in SPINE and any(nodes[a][0] in _SUMS for a in payload):
            stack.extend(reversed(payload))
            if i not in roots and counts[shapes[i]] >= min_rows:
                terms[i] = None
        else:
            terms[i] = None
    return list(terms)


def _row_program(cone: _Cone, keep: np.ndarray) -> Program:
    """The row program of a group from its first term's walk (see the module doc): its
    key spelled out, constants kept where ``keep`` (equal in every row), the others
    read from per-row inputs."""
    s_p, s_u = len(cone.params), len(cone.inputs)
    n_lifted = int(np.count_nonzero(~keep))
    b = Builder(s_p, s_u + n_lifted)
    for slot in range(s_p + s_u + n_lifted):
        b.input(slot)
    lifted_slot = (np.cumsum(~keep) - 1 + s_p + s_u).tolist()
    ids: list[int] = []
    j = 0
    entry: Any
    for entry in cone.key:
        if entry == "c":
            value = cone.consts[j]
            ids.append(b.const(value) if keep[j] else b.input(lifted_slot[j]))
            j += 1
        elif entry[0] == "p":
            ids.append(b.input(entry[1]))
        elif entry[0] == "u":
            ids.append(b.input(s_p + entry[1]))
        else:
            ids.append(b.emit(entry[0], tuple([ids[a] for a in entry[1]])))
    return b.build([ids[-1]], n_values=1)


class _Arrays:
    """The program as arrays (from its canonical encoding, so nearly free): per node its
    kind code, arity, input slot and constant bits, and every op's arguments in
    canonical order (a commutative op's by shape, as :class:`_Cone` orders them) in one
    flat array, node ``i``'s from ``start[i]``."""

    def __init__(self, program: Program, shapes: Sequence[int]) -> None:
        data = program.key()
        fields, names, sections = _layout(data)
        n = fields[0]
        codes, slots, consts, arity, args, _ = [
            np.frombuffer(data, dtype=t, count=k, offset=pos) for t, k, pos in sections]
        self.codes = codes.astype(np.int64)
        is_input = self.codes == (names.index("input") if "input" in names else -1)
        is_const = self.codes == (names.index("const") if "const" in names else -1)
        op_nodes = np.flatnonzero(~(is_input | is_const))
        self.arity = np.zeros(n, dtype=np.int64)
        self.arity[op_nodes] = arity
        self.slot = np.full(n, -1, dtype=np.int64)
        self.slot[is_input] = slots
        self.value = np.zeros(n)
        self.value[is_const] = consts
        self.bits = self.value.view(np.int64)
        self.start = np.zeros(n, dtype=np.int64)
        if op_nodes.size:
            self.start[op_nodes] = np.concatenate(([0], np.cumsum(arity, dtype=np.int64)[:-1]))
        flat = args.astype(np.int64)
        shape = np.asarray(shapes, dtype=np.int64)
        commutative = np.isin(self.codes, [names.index(c) for c in COMMUTATIVE if c in names])
        binary = np.flatnonzero(commutative & (self.arity == 2))
        first, second = self.start[binary], self.start[binary] + 1
        swap = shape[flat[first]] > shape[flat[second]]
        flat[first[swap]], flat[second[swap]] = flat[second[swap]], flat[first[swap]].copy()
        self.args = flat

    def child(self, parents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Argument ``k`` of each node of ``parents``, and where it has one."""
        has = self.arity[parents] > k
        return self.args[np.where(has, self.start[parents] + k, 0)], has


def _match(arrays: _Arrays, cone: _Cone, roots: np.ndarray, n_params: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Which ``roots`` have exactly the key of ``cone`` (a mask), and per root the node
    at each position of the cone's walk: the walk of :class:`_Cone`, done for every
    root at once by following the cone's edges, then checked edge by edge (kinds,
    arities, which leaves are params, ``pow`` exponents, and no two positions on one
    node, so sharing inside the term is the same)."""
    order = cone.nodes
    size = len(order)
    at = np.empty((roots.shape[0], size), dtype=np.int64)
    at[:, size - 1] = roots
    ok = np.ones(roots.shape[0], dtype=bool)
    assigned = [False] * size
    assigned[size - 1] = True
    for p in range(size - 1, -1, -1):   # parents before children
        entry = cone.key[p]
        if not isinstance(entry, tuple) or entry[0] in ("p", "u"):
            continue
        parents = at[:, p]
        for k, q in enumerate(entry[1]):
            child, has = arrays.child(parents, k)
            ok &= has
            if assigned[q]:
                ok &= at[:, q] == child
            else:
                at[:, q] = child
                assigned[q] = True
    template = np.asarray(order, dtype=np.int64)
    ok &= (arrays.codes[at] == arrays.codes[template]).all(axis=1)
    ok &= (arrays.arity[at] == arrays.arity[template]).all(axis=1)
    leaves = np.flatnonzero(arrays.slot[template] >= 0)
    if leaves.size:
        ok &= ((arrays.slot[at[:, leaves]] < n_params)
               == (arrays.slot[template[leaves]] < n_params)).all(axis=1)
    exponents = [entry[1][1] for entry in cone.key
                 if isinstance(entry, tuple) and len(entry) == 3]
    if exponents:
        ok &= (arrays.bits[at[:, exponents]] == arrays.bits[template[exponents]]).all(axis=1)
    distinct = np.ones(size, dtype=bool)
    distinct[cone.const_positions] = False   # a constant is a leaf of its own per use
    ordered = np.sort(at[:, distinct], axis=1)
    ok &= (ordered[:, 1:] != ordered[:, :-1]).all(axis=1)
    return ok, at


@dataclass
class _Bucket:
    """Terms of one key: the first one's walk and every term's node per position."""

    cone: _Cone
    roots: list[int]
    tables: list[np.ndarray]

    @cached_property
    def at(self) -> np.ndarray:
        return np.concatenate(self.tables) if len(self.tables) > 1 else self.tables[0]

    @property
    def rows(self) -> int:
        return len(self.roots)


def _group(program: Program, roots: Sequence[int], min_rows: int, min_term_size: int,
           budget: float, shapes: Sequence[int], arrays: Callable[[], _Arrays]
           ) -> list[_Bucket]:
    """Terms bucketed by key, per bucket worth a row kernel.

    Only terms whose shape (:func:`_shapes`) at least ``min_rows`` terms share are
    considered. Per shape, the first term is walked (:class:`_Cone`) and the others are
    matched against it at once (:func:`_match`); the few that differ (in a leaf
    pattern, sharing, a constant's node) are walked one by one, and the walks stop
    (nothing is grouped) once they have visited ``budget`` nodes: a term that reads a
    long chain (each term of ``acc = f(acc) + g(x_i)`` reads every earlier one) costs
    one pass over the shapes, never a walk per term."""
    nodes, n_params = program.nodes, program.n_params
    by_shape: dict[int, list[int]] = {}
    for r in roots:
        by_shape.setdefault(shapes[r], []).append(r)
    buckets: dict[tuple[object, ...], _Bucket] = {}
    walked = 0
    for members in by_shape.values():
        if len(members) < min_rows:
            continue
        rest = np.asarray(members, dtype=np.int64)
        while rest.size:   # walk one term, match the others against it, repeat
            cone = _Cone(nodes, int(rest[0]), n_params, shapes)
            walked += len(cone.nodes)
            if walked > budget:
                return []
            if cone.size < min_term_size:
                break
            bucket = buckets.setdefault(cone.key, _Bucket(cone, [], []))
            if rest.size > 1:
                ok, at = _match(arrays(), cone, rest, n_params)
                ok[0] = True   # the walked term itself (its walk is the template)
            else:
                ok = np.zeros(rest.size, dtype=bool)
                ok[0] = True
                at = np.asarray(cone.nodes, dtype=np.int64)[None, :].repeat(rest.size, 0)
            bucket.roots.extend(rest[ok].tolist())
            bucket.tables.append(at[ok])
            rest = rest[~ok]
    return [b for b in buckets.values() if b.rows >= min_rows]


def _make_group(nodes: Sequence[tuple[str, Any]], bucket: _Bucket, n_params: int,
                root_ids: np.ndarray | None = None) -> TermGroup:
    """The row program and index tables of a bucket (its first term's walk gives the
    positions of the param, input and constant leaves; every row's nodes there give its
    slots and constants)."""
    first = bucket.cone
    at = bucket.at
    n = bucket.rows
    param_pos = [0] * len(first.params)
    input_pos = [0] * len(first.inputs)
    for position, entry in enumerate(first.key):
        if isinstance(entry, tuple) and entry[0] == "p":
            param_pos[entry[1]] = position
        elif isinstance(entry, tuple) and entry[0] == "u":
            input_pos[entry[1]] = position
    leaf_nodes = at[:, param_pos + input_pos]
    slots = np.array([nodes[i][1] for i in leaf_nodes.ravel().tolist()],
                     dtype=np.int64).reshape(leaf_nodes.shape)
    param_index = slots[:, :len(param_pos)].reshape(n, -1)
    input_index = (slots[:, len(param_pos):] - n_params).reshape(n, -1)
    const_nodes = at[:, first.const_positions]
    data = np.array([nodes[i][1] for i in const_nodes.ravel().tolist()],
                    dtype=np.float64).reshape(n, -1)
    bits = data.view(np.int64)
    keep = np.all(bits == bits[:1], axis=0)
    return TermGroup(
        program=_row_program(first, keep),
        roots=np.array(bucket.roots if root_ids is None else root_ids, dtype=np.int64),
        param_index=param_index,
        input_index=input_index,
        data=np.ascontiguousarray(data[:, ~keep]),
        cone_size=first.size,
    )


def find_structure(program: Program, n_diff: int | None = None, *,
                   min_rows: int = MIN_ROWS, min_term_size: int = MIN_TERM_SIZE,
                   max_recompute: float = MAX_RECOMPUTE,
                   min_program_size: int = MIN_PROGRAM_SIZE) -> Structure | None:
    """The repeated terms of ``program`` and its outer program, or ``None`` when there
    is nothing worth grouping (see the module docstring).

    Args:
        program: a traced (unlowered) program.
        n_diff: the outputs whose spines are searched (default: all values).
        min_rows, min_term_size, max_recompute, min_program_size: the thresholds of
            :data:`MIN_ROWS`, :data:`MIN_TERM_SIZE`, :data:`MAX_RECOMPUTE` and
            :data:`MIN_PROGRAM_SIZE`.
    """
    total = program.n_instructions
    if total < min_program_size:
        return None
    nodes = program.nodes
    n_diff = program.n_values if n_diff is None else n_diff
    shapes = _shapes(nodes)
    terms = _spine_terms(nodes, program.outputs[:n_diff], shapes, min_rows)
    arrays = cache(partial(_Arrays, program, shapes))   # built once, if a match needs it
    buckets = _group(program, terms, min_rows, min_term_size,
                     budget=2 * max_recompute * len(nodes), shapes=shapes, arrays=arrays)
    # outermost terms first (the largest), a term inside a chosen group's cone is
    # computed there: a per-sample loss wins over the pieces it is made of
    buckets.sort(key=lambda b: (-b.cone.size, -b.rows))
    covered = np.zeros(len(nodes), dtype=bool)
    chosen_roots = np.zeros(len(nodes), dtype=bool)
    chosen: list[_Bucket] = []

    def choose(candidates: list[_Bucket]) -> None:
        for bucket in candidates:
            if bucket.rows * bucket.cone.size > max_recompute * total:
                continue
            if covered[bucket.roots].any() or chosen_roots[bucket.at].any():
                continue  # nested in (or around) the terms of a group already chosen
            covered[bucket.at.ravel()] = True
            chosen_roots[bucket.roots] = True
            chosen.append(bucket)

    choose(buckets)
    if not chosen:
        return None
    stragglers = _stragglers(nodes, chosen_roots, min_rows)
    if stragglers:   # a few terms of rare shapes in a sum of grouped ones
        choose(_group(program, stragglers, 1, 1, budget=2 * max_recompute * len(nodes),
                      shapes=shapes, arrays=arrays))
    chosen.sort(key=lambda b: b.roots[0])  # in program order
    n = program.n_params
    groups = tuple(_make_group(nodes, bucket, n) for bucket in chosen)
    offsets: list[int] = []
    term_of: dict[int, int] = {}
    t = 0
    for g in groups:
        offsets.append(t)
        for r in g.roots.tolist():
            term_of[r] = t
            t += 1
    reductions = _reductions(program, term_of, min_rows)
    outer, direct, used = _outer(program, term_of, reductions)
    return Structure(outer, groups, tuple(offsets), direct,
                     tuple(reductions[i][0] for i in used), n)



def _stragglers(nodes: Sequence[tuple[str, Any]], grouped: np.ndarray, min_terms: int
                ) -> list[int]:
    """The arguments of ``sum``/``mean`` nodes that keep them from being a
    :class:`Reduction`: ops that are no grouped term, in a sum of at least ``min_terms``
    grouped terms where they are at most one argument in ten. Given a row kernel of
    their own (one per shape), they let the sum be folded natively instead of leaving
    every term of it to the outer program."""
    found: dict[int, None] = {}
    for kind, payload in nodes:
        if kind not in ("sum", "mean"):
            continue
        terms = sum(1 for a in payload if grouped[a])
        if terms < min_terms:
            continue
        others = [a for a in payload if not grouped[a] and nodes[a][0] not in _LEAVES]
        if others and 10 * len(others) <= len(payload):
            found.update(dict.fromkeys(others))
    return list(found)


def _reductions(program: Program, term_of: dict[int, int], min_terms: int
                ) -> dict[int, tuple[Reduction, float | None]]:
    """The sums of terms: ``sum`` and ``mean`` nodes, and chains ``((a + b) + c) + ...``
    (Python's ``sum()``) whose inner nodes nothing else reads, whose arguments are all
    terms or leaves, at least ``min_terms`` of them terms. Maps each to its
    :class:`Reduction` and, for a ``mean``, the count it divides by."""
    nodes = program.nodes
    n_params = program.n_params
    uses = [0] * len(nodes)
    for kind, payload in nodes:
        if kind not in _LEAVES:
            for a in payload:
                uses[a] += 1
    for o in program.outputs:
        uses[o] += 1

    def element(a: int) -> tuple[int, float] | None:
        """``(source, index or value)`` of an argument, or None if it is neither a term
        nor a leaf."""
        t = term_of.get(a)
        if t is not None:
            return TERM, t
        kind, payload = nodes[a]
        if kind == "input":
            return (PARAM, payload) if payload < n_params else (INPUT, payload - n_params)
        if kind == "const":
            return CONST, payload
        return None

    def reduction(args: list[int]) -> Reduction | None:
        elements = [element(a) for a in args]
        if any(e is None for e in elements):
            return None
        source = np.array([e[0] for e in elements], dtype=np.int64)  # type: ignore[index]
        if np.count_nonzero(source == TERM) < min_terms:
            return None
        values = [e[1] for e in elements]  # type: ignore[index]
        is_const = source == CONST
        index = np.array([v if not c else 0 for v, c in zip(values, is_const.tolist())],
                         dtype=np.int64)
        index[is_const] = np.arange(int(is_const.sum()))
        constants = np.array([v for v, c in zip(values, is_const.tolist()) if c],
                             dtype=np.float64)
        return Reduction(source, index, constants)

    found: dict[int, tuple[Reduction, float | None]] = {}
    chained: set[int] = set()
    for i in range(len(nodes) - 1, -1, -1):
        kind, payload = nodes[i]
        if kind in ("sum", "mean"):
            r = reduction(list(payload))
            if r is not None:
                found[i] = (r, float(len(payload)) if kind == "mean" else None)
        elif kind == "add" and i not in chained and payload[1] in term_of:
            args = []
            j = i
            while True:  # down the left spine of a chain of adds
                left, right = nodes[j][1]
                args.append(right)
                chained.add(j)
                kind_l, payload_l = nodes[left]
                if kind_l == "add" and uses[left] == 1 and left not in term_of:
                    j = left
                    continue
                args.append(left)
                break
            r = reduction(args[::-1])
            if r is not None:
                found[i] = (r, None)
    return found


def _outer(program: Program, term_of: dict[int, int],
           reductions: dict[int, tuple[Reduction, float | None]]
           ) -> tuple[Program, np.ndarray, list[int]]:
    """``program`` reading the terms and the reductions it needs from new param slots;
    also the terms it reads directly and the reductions it reads (node ids)."""
    nodes = program.nodes
    n, n_u = program.n_params, program.n_inputs
    needed = bytearray(len(nodes))
    for o in program.outputs:
        needed[o] = 1
    for i in range(len(nodes) - 1, -1, -1):
        if needed[i] and i not in term_of and i not in reductions:
            kind, payload = nodes[i]
            if kind not in _LEAVES:
                for a in payload:
                    needed[a] = 1
    direct = [i for i in term_of if needed[i]]
    used = [i for i in sorted(reductions) if needed[i]]
    n_new = len(direct) + len(used)
    b = Builder(n + n_new, n_u)
    for slot in range(n + n_new + n_u):
        b.input(slot)
    ids: dict[int, int] = {i: b.input(n + k) for k, i in enumerate(direct)}
    for k, i in enumerate(used):
        total = b.input(n + len(direct) + k)
        count = reductions[i][1]
        ids[i] = total if count is None else b.emit("div", (total, b.const(count)))
    for i, (kind, payload) in enumerate(nodes):
        if not needed[i] or i in ids:
            continue
        if kind == "input":
            ids[i] = b.input(payload if payload < n else payload + n_new)
        elif kind == "const":
            ids[i] = b.const(payload)
        else:
            ids[i] = b.emit(kind, tuple([ids[a] for a in payload]))
    outer = b.build([ids[o] for o in program.outputs], n_values=program.n_values)
    return outer, np.array([term_of[i] for i in direct], dtype=np.int64), used


def group_outputs(program: Program, *, min_rows: int = 1,
                  min_term_size: int = 0) -> list[TermGroup]:
    """The outputs of ``program`` grouped by shape (residuals: one group per shape).

    Every output is in exactly one group (``min_rows=1``); a group's ``roots`` are the
    output indices.
    """
    nodes = program.nodes
    outputs = program.outputs[:program.n_values]
    shapes = _shapes(nodes)
    buckets = _group(program, list(dict.fromkeys(outputs)), min_rows, min_term_size,
                     budget=float("inf"), shapes=shapes,
                     arrays=cache(partial(_Arrays, program, shapes)))
    index_of: dict[int, list[int]] = {}
    for k, o in enumerate(outputs):
        index_of.setdefault(o, []).append(k)
    groups = []
    for bucket in buckets:   # an output given twice is a row of its own each time
        rows = [k for r in bucket.roots for k in index_of[r]]
        repeat = [len(index_of[r]) for r in bucket.roots]
        expanded = _Bucket(bucket.cone, [outputs[k] for k in rows],
                           [np.repeat(bucket.at, repeat, axis=0)])
        groups.append(_make_group(nodes, expanded, program.n_params, root_ids=np.array(rows)))
    return groups
