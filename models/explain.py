"""Why a tree ensemble scored a row as it did, as per-feature contributions to the log-odds
along the row's decision paths (Saabas): each split moves the tree's expected value from the
parent node's to the child's, and the move is credited to the split's feature. A row's
contributions plus the trees' root values sum exactly to its raw score. Per tree that is one
lookup of the row's leaf, the cost of a prediction, where TreeSHAP's cost grows with leaves
times depth squared."""
from __future__ import annotations

import lightgbm as lgb
import numpy as np


def path_tables(booster: lgb.Booster) -> tuple[list[np.ndarray], float]:
    """Per tree, each leaf's contribution to every feature on the path to it (leaves x
    features), and the sum of the trees' root values (the score with no contributions). Read
    from the model's text form, whose internal nodes come after their parents."""
    features = booster.num_feature()
    tables, bias = [], 0.0
    for tree in _trees(booster.model_to_string()):
        leaf_value = np.array(tree["leaf_value"].split(), dtype=float)
        table = np.zeros((len(leaf_value), features))
        tables.append(table)
        if len(leaf_value) == 1:  # a tree of one leaf: no split, no contribution
            bias += leaf_value[0]
            continue
        split = np.array(tree["split_feature"].split(), dtype=int)
        internal = np.array(tree["internal_value"].split(), dtype=float)
        children = zip(np.array(tree["left_child"].split(), dtype=int),
                       np.array(tree["right_child"].split(), dtype=int), strict=True)
        bias += internal[0]
        credit = np.zeros((len(internal), features))
        for node, pair in enumerate(children):
            for child in pair:  # a negative child is the leaf ~child
                step = credit[node].copy()
                step[split[node]] += (leaf_value[~child] if child < 0 else internal[child]
                                      ) - internal[node]
                if child < 0:
                    table[~child] = step
                else:
                    credit[child] = step
    return tables, bias


def _trees(model: str) -> list[dict[str, str]]:
    """The `key=value` lines of each `Tree=` block of a LightGBM model's text form."""
    trees = []
    for block in model.split("\nTree=")[1:]:
        lines = block.split("\n\n", 1)[0].splitlines()[1:]
        trees.append(dict(line.split("=", 1) for line in lines if "=" in line))
    return trees


def contributions(booster: lgb.Booster, tables: list[np.ndarray], x: object) -> np.ndarray:
    """Each row's contribution of every feature to its log-odds (rows x features): the sum of
    its leaves' rows of the tables."""
    leaves = booster.predict(x, pred_leaf=True).reshape(-1, len(tables)).astype(np.int64)
    out = np.zeros((len(leaves), booster.num_feature()))
    for tree, table in enumerate(tables):
        out += table[leaves[:, tree]]
    return out
