"""Steered search benchmark: "same cut, other colours" on H&M, "same colour, other types" on Kaggle.

A steerable adapter (vision.adapter.steerable_parts: a shape part trained on the type columns
and same-product groups, a colour part on the colour column) trains on one half of each
catalogue (adapt_split, seed 0) and the other half is searched alone, exactly, so every query
and result is a product the adapter never saw.

- H&M, "same cut, other colours" (--same shape --vary colour): R@10 of the query product's
  other colour variants (same product_code, another colour_group_name; variants of the query's
  own colour are neither relevant nor counted), over test items that have such variants.
- Kaggle, "same colour, other types" (--same colour --vary type): share of the top 10 with the
  query's baseColour and another articleType (target >= 0.80).

Each is compared with plain search over the same adapter's full vectors and over off-the-shelf
features, with and without dropping results that share the varied value (what --vary does:
the query's colour, or type). How much --vary should also push the varied part's cosine down
(vision.adapter.STEER_PUSH) is chosen on a validation part of the training half (adapt_split
seed 1), never on the test half; the table shows every strength on the test half too.

Colour from the pixels (vision.colour.colour_descriptor: a CIELAB histogram of the product's
foreground, cached under bench/results/features): on the Kaggle task, (a) the descriptor alone,
(b) a colour head trained on the descriptor, or on [descriptor, CNN features], instead of the
CNN features only (Adapter.train on that matrix), (c) the descriptor's cosine mixed with the
steerable adapter's colour part, or with the head of (b), at a weight; every variant with the
query's type dropped, as --same colour --vary type does. The variant and mixing weight are
chosen on the same validation part; the best one is then measured on H&M (its own heads, on
colour_group_name) to show what it does to "same cut, other colours".

Colour prototypes (what the library's steered search does, Adapter.steer / Adapter.read): the
query's colour part moved a share (PULLS) of the way towards the unit mean of the training
half's colour vectors of its colour, the colour being the query item's label (a catalogue item)
or its nearest prototype (a photo query); the share is chosen on the validation part, and a
photo query's colour as read by the prototypes replaces the nearest item's on H&M.

    python bench/steer.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter import DATASETS, FEATURES, RECIPES, embedder, load  # noqa: E402  (bench/adapter.py: cached features)
from common import RESULTS, write_json  # noqa: E402

from stylesense.datasets import hm_articles, kaggle_fashion  # noqa: E402
from stylesense.evaluation.retrieval import adapt_split  # noqa: E402
from stylesense.vision import colour  # noqa: E402
from stylesense.vision.adapter import (  # noqa: E402
    PROTOTYPE_PULL, STEER_PUSH, Adapter, Part, normalize, steerable_parts)
from stylesense.vision.images import load_image  # noqa: E402

K = 10
PUSHES = (0.0, 0.25, 0.5, 1.0)
MIXES = (0.25, 0.5, 0.75)  # the descriptor's share of the cosine in the (c) variants
PULLS = (0.0, 0.25, 0.5, 0.75, 1.0)  # how far the query's colour part moves to its colour's prototype
TIMED_PHOTOS = 300  # photos per set whose decoding and descriptor are timed
# name -> (shape label columns, colour column, task)
SETUPS = {
    "hm": (["product_type_name", "product_group_name", "groups"], "colour_group_name", "same cut, other colours"),
    "kaggle": (["articleType", "subCategory", "masterCategory"], "baseColour", "same colour, other types"),
}


def top_k(queries: np.ndarray, vectors: np.ndarray, k: int, banned: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k best results per query, the query itself (same row) and ``banned`` pairs
    (True = may not be returned) left out."""
    scores = queries @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    if banned is not None:
        scores[banned] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def other_colour_recall(top: np.ndarray, product: np.ndarray, colour: np.ndarray) -> float:
    """Mean R@k of each query's other-colour variants, over queries that have any."""
    same_product = product[:, None] == product[None, :]
    relevant = same_product & (colour[:, None] != colour[None, :])
    counts = relevant.sum(axis=1)
    rows = np.flatnonzero(counts > 0)
    found = np.take_along_axis(relevant[rows], top[rows], axis=1).sum(axis=1)
    return float(np.mean(found / np.minimum(counts[rows], top.shape[1])))


def same_colour_other_type(top: np.ndarray, colour: np.ndarray, kind: np.ndarray) -> float:
    """Share of the top k with the query's colour and another type, over queries with a colour."""
    rows = np.flatnonzero(colour != "")
    hit = (colour[top[rows]] == colour[rows, None]) & (kind[top[rows]] != kind[rows, None])
    return float(hit.mean())


def varied_column(name: str) -> str:
    """What --vary changes in each task: the colour (H&M) or the type (Kaggle)."""
    return "colour_group_name" if name == "hm" else "articleType"


def score(name: str, vectors: np.ndarray, meta: pd.DataFrame, queries: np.ndarray | None = None,
          vary: bool = False) -> float:
    """The task's metric for a search with these (steered) queries; ``vary``: results sharing
    the query's varied value are dropped, as `--vary` does."""
    values = meta[varied_column(name)].to_numpy(str)
    banned = (values[:, None] == values[None, :]) & (values[:, None] != "") if vary else None
    top = top_k(vectors if queries is None else queries, vectors, K, banned)
    if name == "hm":
        return other_colour_recall(top, meta["product_code"].to_numpy(str), meta["colour_group_name"].to_numpy(str))
    return same_colour_other_type(top, meta["baseColour"].to_numpy(str), meta["articleType"].to_numpy(str))


def train(feats: np.ndarray, meta: pd.DataFrame, name: str, threads: int) -> Adapter:
    shape, colour, _ = SETUPS[name]
    group = DATASETS[name][4]
    columns = [c for c in shape if c != "groups"] + [colour]
    return Adapter.train(feats, [meta[c].to_numpy() for c in columns], meta[group].to_numpy() if group else None,
                         label_names=columns, parts=steerable_parts(shape, [colour]), threads=threads)


def steer_of(name: str, push: float) -> dict[str, float]:
    """The part weights of the task's steered search with --vary pushing at ``push``."""
    same, vary = ("shape", "colour") if name == "hm" else ("colour", "shape")
    return {same: 1.0, **({vary: -push} if push else {})}


def run(threads: int, emb) -> dict:
    out, studied = {}, {}
    for name, (_, _, task) in SETUPS.items():
        loaded = load(name, RECIPES[0], emb)
        if loaded is None:
            continue
        ids, feats, meta = loaded
        group = DATASETS[name][4]
        train_mask, test_mask = adapt_split(ids, meta[group].to_numpy() if group else None, seed=0)
        # the push strength, chosen on a validation part of the training half
        t_ids, t_feats, t_meta = ids[train_mask], feats[train_mask], meta[train_mask]
        fit, val = adapt_split(t_ids, t_meta[group].to_numpy() if group else None, seed=1)
        val_adapter = train(t_feats[fit], t_meta[fit], name, threads)
        vv = val_adapter.transform(t_feats[val])
        validation = {str(p): score(name, vv, t_meta[val], val_adapter.steer(vv, steer_of(name, p)), vary=True)
                      for p in PUSHES}
        chosen = max(PUSHES, key=lambda p: (validation[str(p)], -p))

        adapter = train(feats[train_mask], meta[train_mask], name, threads)
        test_meta = meta[test_mask]
        vectors = adapter.transform(feats[test_mask])
        raw = normalize(feats[test_mask])
        rows = {
            "off-the-shelf, plain": score(name, raw, test_meta),
            "off-the-shelf, plain, varied value dropped": score(name, raw, test_meta, vary=True),
            "steerable adapter, plain": score(name, vectors, test_meta),
            "steerable adapter, plain, varied value dropped": score(name, vectors, test_meta, vary=True),
        }
        for p in PUSHES:
            steered = adapter.steer(vectors, steer_of(name, p))
            rows[f"steered, push {p}"] = score(name, vectors, test_meta, steered)
            rows[f"steered, push {p}, varied value dropped"] = score(name, vectors, test_meta, steered, vary=True)
        # what the library searches: the colour part, where weighed, pulled towards the prototype of
        # the query item's colour (Adapter.steer; "same cut" does not weigh it, so nothing changes there)
        own = {"colour": test_meta[SETUPS[name][1]].to_numpy(str)}
        rows["library: steered, colour pulled to its prototype, varied value dropped"] = score(
            name, vectors, test_meta, adapter.steer(vectors, steer_of(name, STEER_PUSH), own), vary=True)
        for label, value in rows.items():
            print(f"{name:7s} {task:26s} {label:48s} {value:.3f}", flush=True)
        print(f"{name:7s} push chosen on validation: {chosen} (vision.adapter.STEER_PUSH {STEER_PUSH}); "
              f"validation {validation}")
        out[name] = {"task": task, "metric": "R@10 of other-colour variants" if name == "hm" else
                     "share of top 10 with the same baseColour and another articleType",
                     "test_items": int(test_mask.sum()), "results": rows,
                     "library": rows["library: steered, colour pulled to its prototype, varied value dropped"],
                     "validation": validation, "push_chosen_on_validation": chosen, "default_push": STEER_PUSH,
                     "parts": adapter.info["parts"], "train_seconds": adapter.info["train_seconds"]}
        train_idx = np.flatnonzero(train_mask)
        studied[name] = Study(name, ids, feats, meta, descriptors(name, ids, emb.image_size),
                              {"fit": train_idx[fit], "val": train_idx[val], "train": train_idx,
                               "test": np.flatnonzero(test_mask)}, {"val": val_adapter, "test": adapter})
    if "kaggle" in studied:
        out["colour_descriptor"] = colour_study(studied, threads, emb.image_size)
    return out


# -- colour from the pixels ---------------------------------------------------------------------


def descriptors(name: str, ids: np.ndarray, image_size: int) -> np.ndarray:
    """The colour descriptors of the set's photos in the order of ``ids``, from the photos as
    the embedder decodes them (draft at its input size); made once and cached beside the CNN
    features, keyed by the descriptor's recipe version."""
    path = FEATURES / f"{DATASETS[name][0]}-colour-v{colour.VERSION}-draft{image_size}.npz"
    if not path.exists():
        source = (kaggle_fashion if name == "kaggle" else hm_articles)(DATASETS[name][1].parent)
        rows = {row[source.id_column]: row for row in
                pd.read_csv(source.csv, dtype=str, keep_default_na=False).to_dict("records")}
        print(f"colour descriptors of {len(ids)} {name} photos into {path} (once)", flush=True)
        vectors = np.stack([colour.colour_descriptor(load_image(source.image_path(rows[i]), draft=image_size))
                            for i in ids])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=ids, vectors=vectors)
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as data:
        cached = dict(zip(data["ids"].astype(str), data["vectors"], strict=True))
    return np.stack([cached[i] for i in ids]).astype(np.float32)


def descriptor_speed(name: str, ids: np.ndarray, image_size: int) -> dict[str, float]:
    """Milliseconds per photo on this thread: decoding (as the embedder does) and the
    descriptor of the decoded photo, over the set's first TIMED_PHOTOS photos."""
    source = (kaggle_fashion if name == "kaggle" else hm_articles)(DATASETS[name][1].parent)
    wanted = set(ids[:TIMED_PHOTOS])
    rows = [r for r in pd.read_csv(source.csv, dtype=str, keep_default_na=False).to_dict("records")
            if r[source.id_column] in wanted]
    start = time.perf_counter()
    images = [load_image(source.image_path(row), draft=image_size) for row in rows]
    decoded = time.perf_counter()
    for image in images:
        colour.colour_descriptor(image)
    done = time.perf_counter()
    return {"photos": len(images), "photo_size": list(images[0].size),
            "decode_ms": round((decoded - start) / len(images) * 1000, 3),
            "descriptor_ms": round((done - decoded) / len(images) * 1000, 3)}


@dataclass
class Study:
    """One set's data for the colour study: features, descriptors, the split's rows (fit / val
    inside the training half; train / test halves) and the steerable adapters trained on the
    fit part ("val") and on the training half ("test")."""

    name: str
    ids: np.ndarray
    feats: np.ndarray
    meta: pd.DataFrame
    desc: np.ndarray
    rows: dict[str, np.ndarray]
    steerable: dict[str, Adapter]

    def inputs(self, kind: str) -> np.ndarray:
        """What a colour head trains on: the descriptor, or the CNN features with the
        descriptor after them, as a home with colour features stores them."""
        return self.desc if kind == "descriptor" else np.concatenate([self.feats, self.desc], axis=1)

    def head(self, kind: str, train_rows: str, threads: int) -> Adapter:
        """A colour head (the steerable adapter's colour part, on other inputs) on these rows;
        on "both", the part a steerable adapter of a home with colour features has."""
        column = SETUPS[self.name][1]
        labels = self.meta[column].to_numpy()[self.rows[train_rows]]
        both = kind == "both"
        return Adapter.train(self.inputs(kind)[self.rows[train_rows]], [labels], label_names=[column],
                             parts=[Part("colour", (column,), 64, 1.0, colour_input=both)],
                             colour_dim=colour.DIM if both else 0, threads=threads)


def blend(*blocks: tuple[np.ndarray, float]) -> np.ndarray:
    """Unit vectors side by side, each scaled by sqrt(its weight): cosine = the weighted sum."""
    return np.concatenate([normalize(v) * np.float32(np.sqrt(w)) for v, w in blocks if w], axis=1)


def part(adapter: Adapter, vectors: np.ndarray, name: str) -> np.ndarray:
    """One part of an adapter's vectors, unit-normalised."""
    return normalize(vectors[:, adapter.layout()[name][0]])


BASES = {"steerable": "steerable colour part (CNN features only)", "descriptor": "colour head on the descriptor",
         "both": "colour head on [descriptor, CNN]"}
# (what the colour vectors start from: a BASES key, or None for the descriptor itself; the
# descriptor's share of the cosine mixed into them)
VARIANTS = [("steerable", 0.0), (None, 1.0), ("descriptor", 0.0), ("both", 0.0),
            *(("steerable", w) for w in MIXES), *(("both", w) for w in MIXES)]


def variant_name(base: str | None, weight: float) -> str:
    if base is None:
        return "descriptor alone"
    return f"{BASES[base]} + descriptor at {weight}" if weight else BASES[base]


def colour_vectors(study: Study, base: str | None, weight: float, side: str, threads: int,
                   made: dict) -> np.ndarray:
    """One variant's colour vectors on the side's search rows ("val": the validation part, its
    heads trained on the fit part; "test": the test half, heads on the training half). ``made``
    keeps each (base, side)'s vectors, so a head trains once per side."""
    rows = study.rows[side]
    desc = study.desc[rows]
    if base is None:
        return desc
    if (base, side) not in made:
        if base == "steerable":
            adapter = study.steerable[side]
            made[base, side] = part(adapter, adapter.transform(study.feats[rows]), "colour")
        else:
            head = study.head(base, "fit" if side == "val" else "train", threads)
            made["head", base, side] = head
            made[base, side] = head.transform(study.inputs(base)[rows])
    return blend((made[base, side], 1 - weight), (desc, weight))


def colour_read(vectors: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Each item's colour as its nearest other item by these vectors has it: what `--vary
    colour` takes for a photo query's colour (a catalogue item has its label)."""
    return colours[top_k(vectors, vectors, 1)[:, 0]]


def colour_study(studied: dict[str, Study], threads: int, image_size: int) -> dict:
    """The Kaggle "same colour, other types" variants (chosen on validation), then the best on
    H&M; prints the rows and returns them for the JSON."""
    kaggle = studied["kaggle"]
    made: dict = {}
    validation, test, reads, variants = {}, {}, {}, {}
    colours = kaggle.meta["baseColour"].to_numpy(str)[kaggle.rows["test"]]
    for base, weight in VARIANTS:
        label = variant_name(base, weight)
        variants[label] = base, weight
        for side, into in (("val", validation), ("test", test)):
            vectors = colour_vectors(kaggle, base, weight, side, threads, made)
            into[label] = score("kaggle", vectors, kaggle.meta.iloc[kaggle.rows[side]], vary=True)
            if side == "test":
                reads[label] = float(np.mean(colour_read(vectors, colours) == colours))
    best = max(validation, key=validation.get)
    for label in test:
        print(f"kaggle  same colour, other types (type dropped) {label:62s} validation {validation[label]:.3f}  "
              f"test {test[label]:.3f}  colour read right {reads[label]:.3f}"
              f"{'  <- best on validation' if label == best else ''}", flush=True)
    pulls = pull_rows(kaggle, made)
    out = {"kaggle": {"metric": "share of top 10 with the same baseColour and another articleType, type dropped",
                      "validation": validation, "test": test, "colour_read_right": reads,
                      "best_on_validation": best, "prototype_pull": pulls,
                      "speed": descriptor_speed("kaggle", kaggle.ids, image_size)},
           "descriptor": {"dim": colour.DIM, "version": colour.VERSION, "size": colour.SIZE, "bins": colour.BINS,
                          "bands": colour.BANDS, "background_delta_e": colour.BACKGROUND_DELTA_E,
                          "centre_sigma": colour.CENTRE_SIGMA}}
    if "hm" in studied:
        out["hm"] = hm_rows(studied["hm"], *variants[best], threads)
        out["hm"]["speed"] = descriptor_speed("hm", studied["hm"].ids, image_size)
    for name, rows in out.items():
        if "speed" in rows:
            print(f"{name:7s} colour descriptor speed (1 thread): {rows['speed']}")
    return out


def pull_rows(study: Study, made: dict) -> dict:
    """Kaggle "same colour, other types" with the head on [descriptor, CNN], its queries pulled
    towards their colour's prototype at each of PULLS, the colour from the query's label or read
    by the prototypes; validation and test. Prints the rows and returns them for the JSON."""
    out: dict = {"validation": {}, "test": {}, "colour_read_right_by_prototypes": {}}
    for side in ("val", "test"):
        head, vectors = made["head", "both", side], made["both", side]
        meta = study.meta.iloc[study.rows[side]]
        labels = meta["baseColour"].to_numpy(str)
        read = head.read(vectors, "colour")
        out["colour_read_right_by_prototypes"][side] = float(np.mean(np.array(read) == labels))
        for pull in PULLS:
            for source, values in (("label", labels), ("read", read)):
                queries = head.steer(vectors, {"colour": 1.0}, {"colour": values}, pull=pull)
                out["validation" if side == "val" else "test"][f"pull {pull}, colour from {source}"] = \
                    score("kaggle", vectors, meta, queries, vary=True)
    best = max(PULLS, key=lambda p: (out["validation"][f"pull {p}, colour from label"], -p))
    out["pull_chosen_on_validation"], out["library_pull"] = best, PROTOTYPE_PULL
    for label, value in out["test"].items():
        print(f"kaggle  same colour, other types, head on [descriptor, CNN], {label:32s} validation "
              f"{out['validation'][label]:.3f}  test {value:.3f}", flush=True)
    print(f"kaggle  colour read right by the prototypes: {out['colour_read_right_by_prototypes']}; pull chosen on "
          f"validation {best} (vision.adapter.PROTOTYPE_PULL {PROTOTYPE_PULL})")
    return out


def hm_rows(study: Study, base: str | None, weight: float, threads: int) -> dict:
    """What the Kaggle-chosen colour variant (its own heads, trained on colour_group_name) does
    on H&M's test half: "same cut, other colours" (R@10 of other-colour variants) with the
    query's colour from its label (a catalogue item: the colour part does not enter) or read
    by the colour part (a photo query: the colour of its nearest item by that part), plain
    search with that colour part in the full vector, and H&M's own "same colour, other type"."""
    rows = study.rows["test"]
    meta = study.meta.iloc[rows]
    adapter = study.steerable["test"]
    vectors = adapter.transform(study.feats[rows])
    shape = part(adapter, vectors, "shape")
    variant = variant_name(base, weight)
    made: dict = {}
    colours = {BASES["steerable"]: part(adapter, vectors, "colour"),
               variant: colour_vectors(study, base, weight, "test", threads, made)}
    # what Adapter.steer and Adapter.read work on: (the adapter, its vectors) of each colour part
    steerers = {BASES["steerable"]: (adapter, vectors), variant: (made.get(("head", base, "test")), made.get((base, "test")))}
    weights = {p["name"]: p["weight"] for p in adapter.info["parts"]}
    labels = meta["colour_group_name"].to_numpy(str)
    product, kind = meta["product_code"].to_numpy(str), meta["product_type_name"].to_numpy(str)
    out = {"variant": variant, "descriptor_weight": weight, "test_items": len(rows)}
    own_colour = (labels[:, None] == labels[None, :]) & (labels[:, None] != "")
    own_type = kind[:, None] == kind[None, :]
    for name, colour_part in colours.items():
        read = colour_read(colour_part, labels)
        full = blend((shape, weights["shape"]), (colour_part, weights["colour"]))
        found = {}
        owner, owned = steerers[name]
        if owner is not None and owner.prototypes("colour") is not None:
            by_proto = np.array(owner.read(owned, "colour"))
            found["same cut, other colours, query's colour read by the prototypes (photo query, library)"] = \
                other_colour_recall(top_k(shape, shape, K, by_proto[:, None] == labels[None, :]), product, labels)
            found["share of queries whose colour the prototypes read right"] = float(np.mean(by_proto == labels))
            pulled = owner.steer(owned, {"colour": 1.0}, {"colour": labels})
            found[f"same colour_group_name, other product type, pulled at {PROTOTYPE_PULL} (type dropped, library)"] = \
                same_colour_other_type(top_k(pulled, owned, K, own_type), labels, kind)
        found |= {
            "same cut, other colours (library: query's colour from its label)":
                other_colour_recall(top_k(shape, shape, K, own_colour), product, labels),
            "same cut, other colours, query's colour read by the colour part (photo query)":
                other_colour_recall(top_k(shape, shape, K, read[:, None] == labels[None, :]), product, labels),
            "share of queries whose colour the colour part reads right": float(np.mean(read == labels)),
            "plain search, full vector": other_colour_recall(top_k(full, full, K), product, labels),
            "same colour_group_name, other product type (type dropped)":
                same_colour_other_type(top_k(colour_part, colour_part, K, own_type), labels, kind),
        }
        out[name] = found
        for label, value in found.items():
            print(f"hm      colour part: {name:58s} {label:80s} {value:.3f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    emb = embedder(RECIPES[0], "auto")
    with threadpool_limits(args.threads):
        results = run(args.threads, emb)
    if results:
        write_json(RESULTS / "steer.json", {"k": K, "precision": emb.precision, "results": results})


if __name__ == "__main__":
    main()
