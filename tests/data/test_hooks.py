"""``ember.utils.hooks.RemovableHandle`` (lives beside the data tests: same owner)."""

import pickle
from collections import OrderedDict

from ember.utils.hooks import RemovableHandle


def test_removable_handle():
    hooks, extra = OrderedDict(), OrderedDict()
    h1, h2 = RemovableHandle(hooks, extra_dict=extra), RemovableHandle(hooks)
    assert h2.id > h1.id
    hooks[h1.id], hooks[h2.id], extra[h1.id] = "a", "b", "x"
    h1.remove()
    assert list(hooks.values()) == ["b"] and not extra
    h1.remove()  # a second remove does nothing
    with h2:
        pass
    assert not hooks


def test_removable_handle_pickles():
    hooks = OrderedDict()
    h = RemovableHandle(hooks)
    hooks[h.id] = 1
    restored_hooks, restored = pickle.loads(pickle.dumps((hooks, h)))
    restored.remove()
    assert not restored_hooks and hooks == {h.id: 1}
    assert RemovableHandle(OrderedDict()).id > h.id
