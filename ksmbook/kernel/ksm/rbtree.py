"""A red-black tree in the style of lib/rbtree.c: the nodes are the payload objects.

As in the kernel, a node embeds its links (``rb_parent``, ``rb_left``, ``rb_right``,
``rb_red``) and the caller does the ordered descent itself (KSM compares page
contents with memcmp at every level), then calls rb_link_node() and
rb_insert_color().  rb_erase() and rb_replace_node() complete the API that
mm/ksm.c uses.
"""
from __future__ import annotations


class RbRoot:
    """struct rb_root."""
    __slots__ = ("rb_node",)

    def __init__(self):
        self.rb_node = None

    def __iter__(self):
        """In-order traversal (rb_first/rb_next)."""
        stack, node = [], self.rb_node
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.rb_left
            node = stack.pop()
            yield node
            node = node.rb_right

    def __len__(self):
        return sum(1 for _ in self)

    def height(self) -> int:
        def h(n):
            return 0 if n is None else 1 + max(h(n.rb_left), h(n.rb_right))
        return h(self.rb_node)


def rb_link_node(node, parent, left: bool, root: RbRoot) -> None:
    """Attach ``node`` as the ``left``/right child of ``parent`` (or as the root)."""
    node.rb_parent = parent
    node.rb_left = node.rb_right = None
    node.rb_red = True
    if parent is None:
        root.rb_node = node
    elif left:
        parent.rb_left = node
    else:
        parent.rb_right = node


def _rotate_left(root, x):
    y = x.rb_right
    x.rb_right = y.rb_left
    if y.rb_left is not None:
        y.rb_left.rb_parent = x
    y.rb_parent = x.rb_parent
    if x.rb_parent is None:
        root.rb_node = y
    elif x is x.rb_parent.rb_left:
        x.rb_parent.rb_left = y
    else:
        x.rb_parent.rb_right = y
    y.rb_left = x
    x.rb_parent = y


def _rotate_right(root, x):
    y = x.rb_left
    x.rb_left = y.rb_right
    if y.rb_right is not None:
        y.rb_right.rb_parent = x
    y.rb_parent = x.rb_parent
    if x.rb_parent is None:
        root.rb_node = y
    elif x is x.rb_parent.rb_right:
        x.rb_parent.rb_right = y
    else:
        x.rb_parent.rb_left = y
    y.rb_right = x
    x.rb_parent = y


def rb_insert_color(node, root: RbRoot) -> None:
    """Rebalance after rb_link_node()."""
    while node.rb_parent is not None and node.rb_parent.rb_red:
        parent = node.rb_parent
        gparent = parent.rb_parent
        if parent is gparent.rb_left:
            uncle = gparent.rb_right
            if uncle is not None and uncle.rb_red:
                parent.rb_red = uncle.rb_red = False
                gparent.rb_red = True
                node = gparent
                continue
            if node is parent.rb_right:
                _rotate_left(root, parent)
                node, parent = parent, node
            parent.rb_red = False
            gparent.rb_red = True
            _rotate_right(root, gparent)
        else:
            uncle = gparent.rb_left
            if uncle is not None and uncle.rb_red:
                parent.rb_red = uncle.rb_red = False
                gparent.rb_red = True
                node = gparent
                continue
            if node is parent.rb_left:
                _rotate_right(root, parent)
                node, parent = parent, node
            parent.rb_red = False
            gparent.rb_red = True
            _rotate_left(root, gparent)
    root.rb_node.rb_red = False


def _transplant(root, u, v):
    if u.rb_parent is None:
        root.rb_node = v
    elif u is u.rb_parent.rb_left:
        u.rb_parent.rb_left = v
    else:
        u.rb_parent.rb_right = v
    if v is not None:
        v.rb_parent = u.rb_parent


def rb_erase(node, root: RbRoot) -> None:
    """Unlink ``node`` and rebalance (CLRS delete with explicit nil handling)."""
    if node.rb_left is None or node.rb_right is None:
        child = node.rb_left if node.rb_left is not None else node.rb_right
        parent = node.rb_parent
        removed_red = node.rb_red
        _transplant(root, node, child)
    else:
        succ = node.rb_right
        while succ.rb_left is not None:
            succ = succ.rb_left
        removed_red = succ.rb_red
        child = succ.rb_right
        if succ.rb_parent is node:
            parent = succ
        else:
            parent = succ.rb_parent
            _transplant(root, succ, succ.rb_right)
            succ.rb_right = node.rb_right
            succ.rb_right.rb_parent = succ
        _transplant(root, node, succ)
        succ.rb_left = node.rb_left
        succ.rb_left.rb_parent = succ
        succ.rb_red = node.rb_red
    node.rb_parent = node.rb_left = node.rb_right = None
    if not removed_red:
        _erase_fixup(root, child, parent)


def _erase_fixup(root, x, parent):
    while x is not root.rb_node and (x is None or not x.rb_red):
        if x is parent.rb_left:
            w = parent.rb_right
            if w.rb_red:
                w.rb_red = False
                parent.rb_red = True
                _rotate_left(root, parent)
                w = parent.rb_right
            if (w.rb_left is None or not w.rb_left.rb_red) and \
                    (w.rb_right is None or not w.rb_right.rb_red):
                w.rb_red = True
                x, parent = parent, parent.rb_parent
            else:
                if w.rb_right is None or not w.rb_right.rb_red:
                    w.rb_left.rb_red = False
                    w.rb_red = True
                    _rotate_right(root, w)
                    w = parent.rb_right
                w.rb_red = parent.rb_red
                parent.rb_red = False
                if w.rb_right is not None:
                    w.rb_right.rb_red = False
                _rotate_left(root, parent)
                x = root.rb_node
                break
        else:
            w = parent.rb_left
            if w.rb_red:
                w.rb_red = False
                parent.rb_red = True
                _rotate_right(root, parent)
                w = parent.rb_left
            if (w.rb_right is None or not w.rb_right.rb_red) and \
                    (w.rb_left is None or not w.rb_left.rb_red):
                w.rb_red = True
                x, parent = parent, parent.rb_parent
            else:
                if w.rb_left is None or not w.rb_left.rb_red:
                    w.rb_right.rb_red = False
                    w.rb_red = True
                    _rotate_left(root, w)
                    w = parent.rb_left
                w.rb_red = parent.rb_red
                parent.rb_red = False
                if w.rb_left is not None:
                    w.rb_left.rb_red = False
                _rotate_right(root, parent)
                x = root.rb_node
                break
    if x is not None:
        x.rb_red = False


def rb_replace_node(victim, new, root: RbRoot) -> None:
    """Put ``new`` exactly where ``victim`` was (same colour, same children)."""
    parent = victim.rb_parent
    new.rb_parent, new.rb_left, new.rb_right, new.rb_red = \
        parent, victim.rb_left, victim.rb_right, victim.rb_red
    if victim.rb_left is not None:
        victim.rb_left.rb_parent = new
    if victim.rb_right is not None:
        victim.rb_right.rb_parent = new
    if parent is None:
        root.rb_node = new
    elif parent.rb_left is victim:
        parent.rb_left = new
    else:
        parent.rb_right = new
    victim.rb_parent = victim.rb_left = victim.rb_right = None


def rb_check(root: RbRoot) -> int:
    """Assert the red-black invariants; returns the black height (for tests)."""
    def rec(n, parent):
        if n is None:
            return 1
        assert n.rb_parent is parent, "broken parent link"
        if n.rb_red:
            assert not (n.rb_left and n.rb_left.rb_red) and not (n.rb_right and n.rb_right.rb_red), \
                "red node with red child"
        lh, rh = rec(n.rb_left, n), rec(n.rb_right, n)
        assert lh == rh, "unequal black height"
        return lh + (0 if n.rb_red else 1)
    if root.rb_node is not None:
        assert not root.rb_node.rb_red, "red root"
    return rec(root.rb_node, None)
