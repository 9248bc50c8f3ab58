"""The kernel-style red-black tree: insert, erase and replace keep the invariants."""
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksmbook.kernel.ksm.rbtree import (RbRoot, rb_check, rb_erase, rb_insert_color, rb_link_node,
                                       rb_replace_node)


class Node:
    __slots__ = ("key", "rb_parent", "rb_left", "rb_right", "rb_red")

    def __init__(self, key):
        self.key = key
        self.rb_parent = self.rb_left = self.rb_right = None
        self.rb_red = False

    def __repr__(self):
        return f"Node({self.key})"


def insert(root, node):
    """The caller's descent, as mm/ksm.c does it, then link and recolour."""
    parent, left, cur = None, False, root.rb_node
    while cur is not None:
        parent = cur
        left = node.key < cur.key
        cur = cur.rb_left if left else cur.rb_right
    rb_link_node(node, parent, left, root)
    rb_insert_color(node, root)


def keys(root):
    return [n.key for n in root]


def test_empty_tree():
    root = RbRoot()
    assert list(root) == [] and len(root) == 0 and root.height() == 0
    assert rb_check(root) == 1


def test_sorted_inserts_stay_balanced():
    root = RbRoot()
    nodes = [Node(i) for i in range(1000)]
    for n in nodes:
        insert(root, n)
        assert not root.rb_node.rb_red
    rb_check(root)
    assert keys(root) == list(range(1000))
    # a red-black tree of n nodes is at most 2*log2(n+1) high: 2 * log2(1001) < 20
    assert root.height() <= 19


@given(st.lists(st.integers(0, 200), unique=True, max_size=80), st.randoms())
def test_random_inserts_and_erases(values, rnd):
    root = RbRoot()
    nodes = {v: Node(v) for v in values}
    for n in nodes.values():
        insert(root, n)
        rb_check(root)
    assert keys(root) == sorted(values)
    order = list(values)
    rnd.shuffle(order)
    alive = set(values)
    for v in order:
        rb_erase(nodes[v], root)
        alive.discard(v)
        rb_check(root)
        assert keys(root) == sorted(alive)
    assert root.rb_node is None


def test_replace_node_takes_the_place_and_colour():
    root = RbRoot()
    nodes = [Node(i * 2) for i in range(20)]
    for n in nodes:
        insert(root, n)
    victim = nodes[7]
    red, left, right, parent = victim.rb_red, victim.rb_left, victim.rb_right, victim.rb_parent
    new = Node(14)
    rb_replace_node(victim, new, root)
    rb_check(root)
    assert (new.rb_red, new.rb_left, new.rb_right, new.rb_parent) == (red, left, right, parent)
    assert new in list(root) and victim not in list(root)
    assert victim.rb_parent is victim.rb_left is victim.rb_right is None
    # replacing the root
    top = root.rb_node
    new_top = Node(top.key)
    rb_replace_node(top, new_top, root)
    assert root.rb_node is new_top
    rb_check(root)


def test_rb_check_catches_broken_trees():
    root = RbRoot()
    nodes = [Node(i) for i in range(10)]
    for n in nodes:
        insert(root, n)
    root.rb_node.rb_red = True
    with pytest.raises(AssertionError, match="red root"):
        rb_check(root)
    root.rb_node.rb_red = False
    leaf = next(n for n in nodes if n.rb_left is None and n.rb_right is None and not n.rb_red)
    leaf.rb_red = True
    parent = leaf.rb_parent
    was = parent.rb_red
    parent.rb_red = True
    with pytest.raises(AssertionError):
        rb_check(root)
    parent.rb_red = was
    leaf.rb_red = False
    leaf.rb_parent = None
    with pytest.raises(AssertionError, match="parent"):
        rb_check(root)


def test_many_mixed_operations_deterministic():
    rnd = random.Random(1234)
    root = RbRoot()
    present = {}
    for step in range(3000):
        k = rnd.randrange(500)
        if k in present:
            rb_erase(present.pop(k), root)
        else:
            present[k] = Node(k)
            insert(root, present[k])
        if step % 97 == 0:
            rb_check(root)
    rb_check(root)
    assert keys(root) == sorted(present)
