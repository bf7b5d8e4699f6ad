"""GRU4Rec: a recurrent network that reads a shopper's item sequence and scores the next item
(Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018; Hidasi & Czapp, RecSys 2023), in
PyTorch on the CPU.

The network: an item embedding feeds a GRU; the GRU's hidden state after the last item, times an
output item embedding plus an item bias, is the score of every catalogue item as the next one.
By default the input embedding *is* the output embedding (``embedding_size=0``, the 2023
implementation's "constrained embedding").

Training follows the paper's session-parallel mini-batches: ``batch_size`` sequences are read
side by side, one item per step; each step predicts every lane's next item, takes a gradient
step and carries the hidden states on (truncated back-propagation of one step). When a lane's
sequence ends, the next sequence takes the lane over with a fresh (zero) hidden state, and lanes
no sequence is left for are dropped.

Sequences: whole user timelines (``train_on="timeline"``, the default) or sessions
(``train_on="session"``): the events' ``session_id`` where they carry one, otherwise a user's
timeline cut at pauses longer than ``session_gap_hours`` (any value under 24 h makes one session
of each shopping day in a day-stamped purchase log such as H&M's). Sequences longer than
``train_len`` are cut into windows of ``train_len`` items overlapping by one (every transition
is trained once), each read from a fresh hidden state, which is how scoring reads a user's last
``max_len`` items. Immediate repeats of an item are dropped (a user re-rating or re-buying the
same item says nothing about what comes next); one-item sequences have nothing to predict.

Losses (``loss``), each scoring the step's targets against negatives:

* ``"bpr-max"`` (default): the 2018 paper's BPR-max, a softmax-weighted BPR over the negatives
  plus the score regulariser ``bpreg``. The negatives are the other lanes' targets (in-batch)
  and ``n_sample`` shared items drawn with probability ~ popularity ** ``sample_alpha``.
* ``"cross-entropy"``: sampled softmax over the same candidates (the 2023 implementation's
  default); ``logq`` subtracts ``logq * log(popularity)`` from the candidates' scores (the
  sampling-bias correction).
* ``"full-cross-entropy"``: softmax over the whole catalogue (exact; costs n_items per step).

A candidate that equals a lane's own target (another lane heading to the same item, or a sampled
negative that happens to be it) is masked out of that lane's negatives. Items without training
events get the lowest item bias, so they never outrank a trained item on bias alone.

Real time: scores always come from running the GRU over the user's latest sequence
(``sequence(user)``, training events then ``update`` events, last ``max_len`` items), so a click
folded in by ``update`` moves the next ``recommend`` without a retrain (``updatable``), for
shoppers first seen in ``update`` too. Users are scored in batches: sequences are right-padded
and packed, and the GRU's last valid hidden state is scored against every item.

Determinism: a fit seeds ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the
caller's global RNG state is restored afterwards) and draws sequence order and negatives from a
local ``torch.Generator``; ``torch.set_num_threads(threads)`` is set during fit and scoring and
restored afterwards. The same seed and thread count give identical models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import nn
from torch.nn import functional as F

from stylesense.errors import InvalidInput
from stylesense.recommenders.als import factor_cosine, require_float, require_int
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.torch_threads import torch_threads
from stylesense.recommenders.data import Interactions, session_starts

LOSSES = ("cross-entropy", "bpr-max", "full-cross-entropy")
TRAIN_ON = ("timeline", "session")
_SAMPLE_CACHE_STEPS = 64  # negatives are drawn for this many steps at a time




def training_sequences(
    data: Interactions, train_on: str, gap_hours: float, max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(items, offsets): the training sequences concatenated, sequence s being
    ``items[offsets[s]:offsets[s + 1]]``; immediate repeats dropped, sequences of one item
    (nothing to predict) left out, sequences longer than ``max_len`` cut into windows."""
    order = np.argsort(data.user, kind="stable")  # events are time-sorted: per-user time order
    u, item = data.user[order], data.item[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    if train_on == "session":
        starts = session_starts(first, data.ts[order], data.session[order], gap_hours)
    else:
        starts = first
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (item[1:] == item[:-1]) & ~starts[1:]
    item, starts = item[~repeat], starts[~repeat]
    bounds = np.append(np.flatnonzero(starts), len(item))
    lengths = np.diff(bounds)
    keep = lengths >= 2
    kept = np.repeat(keep, lengths)
    item = item[kept].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    if max_len is None or max_len < 2 or lengths[keep].max(initial=0) <= max_len:
        return item, offsets
    # Cut long sequences into windows of max_len items overlapping by one, so every transition
    # is still trained once, each window from a fresh hidden state, as scoring reads them.
    pieces, piece_offsets = [], [0]
    for a, b in zip(offsets[:-1], offsets[1:]):
        for lo in range(a, b - 1, max_len - 1):
            hi = min(lo + max_len, b)
            pieces.append(item[lo:hi])
            piece_offsets.append(piece_offsets[-1] + hi - lo)
    return np.concatenate(pieces), np.asarray(piece_offsets, dtype=np.int64)


class _Net(nn.Module):
    """Item embedding -> GRU -> scores against output item embeddings plus item biases.
    ``embedding_size == 0`` ties the input embedding to the output one (the 2023
    implementation's ``constrained_embedding``)."""

    def __init__(self, n_items: int, hidden: int, embedding: int, dropout: float, embedding_dropout: float):
        super().__init__()
        scale = math.sqrt(6.0 / (n_items + hidden))
        self.out = nn.Parameter(torch.empty(n_items, hidden).uniform_(-scale, scale))
        self.bias = nn.Parameter(torch.zeros(n_items, 1))
        if embedding > 0:
            scale = math.sqrt(6.0 / (n_items + embedding))
            self.inp = nn.Parameter(torch.empty(n_items, embedding).uniform_(-scale, scale))
        else:
            self.inp = None
        self.gru = nn.GRU(embedding or hidden, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.embedding_dropout = nn.Dropout(embedding_dropout)

    def embed(self, items: torch.Tensor, sparse_grad: bool) -> torch.Tensor:
        table = self.out if self.inp is None else self.inp
        return self.embedding_dropout(F.embedding(items, table, sparse=sparse_grad))

    def step(self, items: torch.Tensor, h: torch.Tensor, sparse_grad: bool) -> torch.Tensor:
        """One item per lane in, the new hidden states (lanes x hidden) out."""
        _, h = self.gru(self.embed(items, sparse_grad)[:, None, :], h[None])
        return h[0]

    def encode(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Last valid hidden state of each right-padded sequence (all lengths >= 1)."""
        x = self.embed(padded, False)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return h[0]

    def scores(
        self, h: torch.Tensor, candidates: torch.Tensor | None = None, sparse_grad: bool = False
    ) -> torch.Tensor:
        """Scores of ``candidates`` (every item when None) for each hidden state."""
        if candidates is None:
            return h @ self.out.T + self.bias.T
        w = F.embedding(candidates, self.out, sparse=sparse_grad)
        b = F.embedding(candidates, self.bias, sparse=sparse_grad)
        return h @ w.T + b.T


def _sampled_loss(kind: str, logits: torch.Tensor, false_negative: torch.Tensor, bpreg: float) -> torch.Tensor:
    """Loss of ``logits`` (lanes x candidates; lane i's target is column i), ``false_negative``
    masking candidates that equal a lane's own target elsewhere in the row."""
    if kind == "cross-entropy":
        logits = logits.masked_fill(false_negative, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(logits)))
    # BPR-max (Hidasi & Karatzoglou 2018): softmax-weighted BPR over the negatives, plus a
    # score regulariser on the same weights.
    n = len(logits)
    target = logits.diagonal()[:, None]
    own = torch.zeros_like(false_negative)
    own[:, :n] = torch.eye(n, dtype=torch.bool)
    excluded = false_negative | own
    some = ~excluded.all(dim=1)  # lanes with at least one negative (else nothing to rank)
    if not some.all():
        if not some.any():
            return logits.sum() * 0.0
        logits, excluded, target = logits[some], excluded[some], target[some]
    weight = torch.softmax(logits.masked_fill(excluded, float("-inf")), dim=1)
    neg = logits.masked_fill(excluded, 0.0)
    loss = -torch.log((weight * torch.sigmoid(target - neg)).sum(dim=1) + 1e-24)
    return (loss + bpreg * (weight * neg * neg).sum(dim=1)).mean()


class GRU4Rec(Recommender):
    """Session-based recurrent recommender (GRU4Rec) with session-parallel training.

    Parameters:

    * ``loss``: "bpr-max" (default), "cross-entropy" (sampled softmax), "full-cross-entropy".
    * ``hidden_size``: GRU units (also the output embedding size); ``embedding_size``: input
      item embedding size, 0 (default) to use the output embedding as input.
    * ``dropout`` (on the GRU output), ``embedding_dropout`` (on the input embedding).
    * ``learning_rate`` (Adam for the GRU; sparse Adam for the item tables with the sampled
      losses), ``epochs``, ``batch_size`` (parallel lanes), ``n_sample`` (shared negatives per
      step, besides the other lanes' targets), ``sample_alpha`` (negatives ~ popularity **
      alpha; 0 = uniform), ``bpreg`` (BPR-max score regulariser), ``logq`` (cross-entropy's
      popularity correction; 0 = off).
    * ``train_on``: "timeline" or "session"; ``session_gap_hours``: the pause that starts a
      new session where events carry no session id; ``train_len``: training window length.
    * ``max_len``: scoring reads the user's last ``max_len`` items.
    * ``seed``; ``threads``: torch CPU threads during fit and scoring. The default is 1: each
      training step works on tensors of a few thousand numbers, too small to share out, and a
      second thread only adds synchronisation (on a busy 2-core machine a fit on 2 threads took
      ten times as long as on 1, with identical results).

    Defaults come from MovieLens-100K's last-item protocol (each user's last rating held out,
    HitRate@10 / MRR@10, three seeds): BPR-max with uniform negatives beat sampled
    cross-entropy and full cross-entropy, whole timelines (in 50-item windows) beat sessions cut
    at one-hour pauses, popularity-skewed negatives (``sample_alpha=0.75``) hurt every loss
    there, and a shared input/output embedding helped MRR a little. ``search_space`` spans that
    region.

    ``similar_items``: cosine similarity of the output item embeddings (the vectors the GRU
    state is scored against: two items are similar when the same sequence states predict both).
    """

    name = "gru4rec"
    updatable = True
    on_epoch = None  # optional callable(model) after each training epoch (for experiments)
    defaults = {
        "loss": "bpr-max",
        "hidden_size": 128,
        "embedding_size": 0,
        "dropout": 0.1,
        "embedding_dropout": 0.0,
        "learning_rate": 0.001,
        "epochs": 5,
        "batch_size": 64,
        "n_sample": 512,
        "sample_alpha": 0.0,
        "bpreg": 1.0,
        "logq": 0.0,
        "train_on": "timeline",
        "session_gap_hours": 1.0,
        "train_len": 50,
        "max_len": 50,
        "seed": 0,
        "threads": 1,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if p["loss"] not in LOSSES:
            raise InvalidInput(f"gru4rec: loss must be one of {', '.join(LOSSES)}, got {p['loss']!r}")
        if p["train_on"] not in TRAIN_ON:
            raise InvalidInput(f"gru4rec: train_on must be one of {', '.join(TRAIN_ON)}, got {p['train_on']!r}")
        for key in ("hidden_size", "epochs", "batch_size", "max_len", "threads"):
            require_int(p, key, 1, self.name)
        require_int(p, "train_len", 2, self.name)
        for key in ("embedding_size", "n_sample", "seed"):
            require_int(p, key, 0, self.name)
        require_float(p, "learning_rate", 0.0, self.name)
        require_float(p, "session_gap_hours", 0.0, self.name)
        for key in ("sample_alpha", "bpreg", "logq", "dropout", "embedding_dropout"):
            require_float(p, key, 0.0, self.name, strict=False)
        for key in ("dropout", "embedding_dropout"):
            if p[key] >= 1.0:
                raise InvalidInput(f"gru4rec: {key} must be in [0, 1), got {p[key]}")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Optuna-suggested parameters around the region that did well on MovieLens-100K."""
        loss = trial.suggest_categorical("loss", ["bpr-max", "cross-entropy"])
        window = trial.suggest_categorical("max_len", [20, 50, 100])
        params: dict[str, Any] = {
            "loss": loss,
            "hidden_size": trial.suggest_int("hidden_size", 64, 256, log=True),
            "embedding_size": trial.suggest_categorical("embedding_size", [0, 64]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "learning_rate": trial.suggest_float("learning_rate", 5e-4, 3e-3, log=True),
            "epochs": trial.suggest_int("epochs", 4, 12),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "n_sample": trial.suggest_categorical("n_sample", [128, 512, 2048]),
            "sample_alpha": trial.suggest_float("sample_alpha", 0.0, 0.75),
            "train_on": trial.suggest_categorical("train_on", ["timeline", "session"]),
            "train_len": window,
            "max_len": window,
        }
        if loss == "bpr-max":
            params["bpreg"] = trial.suggest_float("bpreg", 0.0, 2.0)
        return params

    # -- fitting ----------------------------------------------------------------------
    def _new_net(self, n_items: int) -> _Net:
        p = self.params
        return _Net(n_items, p["hidden_size"], p["embedding_size"], p["dropout"], p["embedding_dropout"])

    def _fit(self, data: Interactions) -> None:
        p = self.params
        items, offsets = training_sequences(data, p["train_on"], p["session_gap_hours"], p["train_len"])
        counts = np.bincount(data.item, minlength=data.n_items).astype(np.float64)
        self.loss_history: list[float] = []
        with torch_threads(p["threads"]), torch.random.fork_rng(devices=[]):
            torch.manual_seed(p["seed"])
            self.net = self._new_net(data.n_items)
            if len(offsets) > 1:
                self._train(items, offsets, counts)
            with torch.no_grad():  # items never trained on rank below every trained one
                untrained = torch.from_numpy(counts == 0)
                if untrained.any() and not untrained.all():
                    self.net.bias[untrained] = self.net.bias[~untrained].min() - 1.0
        self.net.eval()
        self._norms = None

    def _train(self, items_np: np.ndarray, offsets: np.ndarray, counts: np.ndarray) -> None:
        p = self.params
        net = self.net
        full = p["loss"] == "full-cross-entropy"
        sparse_grad = not full
        tables = [t for t in (net.out, net.bias, net.inp) if t is not None]
        dense = [q for q in net.parameters() if all(q is not t for t in tables)]
        if sparse_grad:
            optimizers = [torch.optim.Adam(dense, lr=p["learning_rate"]),
                          torch.optim.SparseAdam(tables, lr=p["learning_rate"])]
        else:
            optimizers = [torch.optim.Adam(net.parameters(), lr=p["learning_rate"])]
        gen = torch.Generator().manual_seed(p["seed"])
        items = torch.from_numpy(items_np)
        n_seq = len(offsets) - 1
        n_sample = 0 if full else p["n_sample"]
        prob = torch.from_numpy(counts ** p["sample_alpha"] * (counts > 0))
        log_pop = torch.from_numpy(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))).float()
        samples = torch.empty(0, n_sample, dtype=torch.int64)
        used = 0
        net.train()
        for _ in range(p["epochs"]):
            perm = torch.randperm(n_seq, generator=gen).numpy()
            seq_start, seq_end = offsets[:-1][perm], offsets[1:][perm]
            lanes = min(p["batch_size"], n_seq)
            pos, end = seq_start[:lanes].copy(), seq_end[:lanes].copy()
            following = lanes
            h = torch.zeros(lanes, p["hidden_size"])
            total, steps = 0.0, 0
            while len(pos):
                run = int((end - pos).min()) - 1  # steps every lane can take before one ends
                for j in range(run):
                    inp = items[torch.from_numpy(pos + j)]
                    target = items[torch.from_numpy(pos + j + 1)]
                    if n_sample:
                        if used == len(samples):
                            drawn = torch.multinomial(prob, _SAMPLE_CACHE_STEPS * n_sample, True, generator=gen)
                            samples, used = drawn.view(_SAMPLE_CACHE_STEPS, n_sample), 0
                        negatives = samples[used]
                        used += 1
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    h = net.step(inp, h, sparse_grad)
                    out = net.dropout(h)
                    if full:
                        loss = F.cross_entropy(net.scores(out), target)
                    else:
                        candidates = torch.cat([target, negatives]) if n_sample else target
                        logits = net.scores(out, candidates, sparse_grad=True)
                        if p["logq"]:
                            logits = logits - p["logq"] * log_pop[candidates]
                        false_negative = candidates[None, :] == target[:, None]
                        false_negative[:, : len(target)].fill_diagonal_(False)
                        loss = _sampled_loss(p["loss"], logits, false_negative, p["bpreg"])
                    loss.backward()
                    for opt in optimizers:
                        opt.step()
                    h = h.detach()
                    total += loss.item()
                    steps += 1
                pos += run
                done = np.flatnonzero(end - pos <= 1)
                refill = done[: max(0, min(len(done), n_seq - following))]
                nxt = np.arange(following, following + len(refill))
                following += len(refill)
                pos[refill], end[refill] = seq_start[nxt], seq_end[nxt]
                if len(refill):
                    h[torch.from_numpy(refill)] = 0.0
                keep = np.ones(len(pos), dtype=bool)
                keep[done[len(refill):]] = False
                if not keep.all():
                    pos, end, h = pos[keep], end[keep], h[torch.from_numpy(keep)]
            self.loss_history.append(total / max(steps, 1))
            if self.on_epoch is not None:  # experiments: watch a metric along the epochs
                net.eval()
                self.on_epoch(self)
                net.train()

    # -- scoring ----------------------------------------------------------------------
    def _recent(self, user: int) -> np.ndarray:
        """The user's last ``max_len`` items, immediate repeats dropped (as in training)."""
        return self._recent_of(self.sequence(int(user)))

    def _recent_of(self, seq: np.ndarray) -> np.ndarray:
        """:meth:`_recent` of an item sequence (oldest first), a user's or a session's."""
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) > 1:
            seq = seq[np.append(True, seq[1:] != seq[:-1])]
        return seq[-self.params["max_len"]:]

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        return self._score_sequences([self._recent(u) for u in users])

    def _session_scores(self, items: np.ndarray, row: sparse.csr_matrix) -> np.ndarray:
        return self._score_sequences([self._recent_of(items)])[0]

    def _score_sequences(self, seqs: list[np.ndarray]) -> np.ndarray:
        """One score row per sequence: the GRU's last state against every item (zeros for an
        empty sequence)."""
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        out = np.zeros((len(seqs), self.data.n_items), dtype=np.float32)
        rows = np.flatnonzero(lengths > 0)
        if len(rows) == 0:
            return out
        padded = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
        for r, u in enumerate(rows):
            padded[r, : lengths[u]] = seqs[u]
        with torch_threads(self.params["threads"]), torch.no_grad():
            h = self.net.encode(torch.from_numpy(padded), torch.from_numpy(lengths[rows]))
            out[rows] = self.net.scores(h).numpy()
        return out

    def _similar(self, item: int) -> np.ndarray:
        """Cosine of the output item embeddings."""
        w = self.net.out.detach().numpy()
        if self._norms is None:
            self._norms = np.linalg.norm(w, axis=1)
        return factor_cosine(w, self._norms, item)

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"net__{k.replace('.', '__')}": v.detach().numpy() for k, v in self.net.state_dict().items()}
        state["loss_history"] = np.asarray(self.loss_history, dtype=np.float64)
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.net = self._new_net(self.data.n_items)
        self.net.load_state_dict(
            {k[5:].replace("__", "."): torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("net__")}
        )
        self.net.eval()
        self.loss_history = state["loss_history"].tolist()
        self._norms = None
