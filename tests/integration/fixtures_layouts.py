# -*- coding: utf-8 -*-
"""pytest fixtures: real OCI layouts (built by rig.layouts, cached across runs).

Register with `pytest_plugins = ["fixtures_layouts"]` (or import the fixtures).

  layouts        session  rig.layouts.LayoutSet: .family, .multiplatform, .big (paths of the
                          shared cached layouts: never modify them), .info[name] (tags,
                          blob count, bytes, platforms: see rig.layouts.describe), .timings
  layout_copy    function factory(name) -> path of a private copy under tmp_path
  broken_layout  function factory(kind, base="family") -> dict from rig.layouts.BROKEN_KINDS
                          ('path', 'expect', 'what', and 'digest'/'tag' where one is involved)
"""
import os

import pytest

from rig import layouts as _layouts


@pytest.fixture(scope="session")
def layouts():
    return _layouts.cached_layouts()


@pytest.fixture
def layout_copy(layouts, tmp_path):
    counter = [0]

    def make(name):
        counter[0] += 1
        return layouts.copy(name, os.path.join(str(tmp_path), "%s-copy%d" % (name, counter[0])))
    return make


@pytest.fixture
def broken_layout(layouts, tmp_path):
    def make(kind, base="family"):
        return layouts.broken(kind, os.path.join(str(tmp_path), "%s-%s" % (base, kind)), base=base)
    return make
