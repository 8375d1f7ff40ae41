# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The publish sequence: read a layout, plan, commit in a safe order into a store.

One sequence for every store. ``run(target, request, layout)``:

1. ``prepare``: the tags chosen (``_plan.tag_pairs``, each tag validated),
   the layout validated for them (every blob hashed: ``_plan.publication``),
   the index operations, and the templates checked against the site
   (``SiteLayout.check_templates``). Bad input stops here, before the store
   is touched. A target may say which blobs it ``verifies_on_arrival``
   (hashed as they arrive, none committed unless all match: every blob for
   the ``publish_layout`` action plugin's, the blobs uploaded in parts for
   S3): those it lacks are not hashed here but there, so each byte is
   hashed once; the others are hashed after the probe, before the commit
   (in check mode, all of them).
2. probe the store, read-only (``_plan.probe``): which blobs it has with
   which size, the current documents, what it finds wrong with objects that
   are there;
3. plan (``_plan.make_plan``); in check mode, or when nothing changes, stop
   here and report;
4. commit (``_commit.execute``): blobs, fixes, the referenced-blobs check,
   documents, the index merged under the lock, the well-known document,
   then prune;
5. report (``_report``).

A *target* is where the store is reached: ``StoreTarget`` wraps a store on
this machine (an S3 bucket, a web root for ``ref_engines``); the
``publish_layout`` action plugin has one that runs the probe and the commit
on the host with the web root (``_target``). A store differs only in its
primitives (``_stores.Store``: S3 uploads many blobs at once and fixes
headers, a web root writes aside and renames); the sequence does not know
which.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections import namedtuple

from ansible_collections.oci.discovery.plugins.module_utils import _registry
from ansible_collections.oci.discovery.plugins.module_utils._commit import LayoutBlobs, execute
from ansible_collections.oci.discovery.plugins.module_utils._plan import (
    commit_request, index_ops, make_plan, probe, probe_request, publication, tag_pairs)
from ansible_collections.oci.discovery.plugins.module_utils._report import diff, summary
from ansible_collections.oci.discovery.plugins.module_utils._site import SITE_LAYOUTS, PlanError

STATES = ('present', 'absent')
# The argument spec of the options both publish modules share (documented in the
# oci.discovery.publish doc fragment).
PUBLISH_OPTIONS = dict(
    tags=dict(type='list', elements='raw'),
    site_layout=dict(type='str', choices=list(SITE_LAYOUTS), default='cas_bucket'),
    base_url=dict(type='str'),
    cas_template=dict(type='str'),
    index_template=dict(type='str'),
    state=dict(type='str', choices=list(STATES), default='present'),
)


class Request:
    """What to publish. ``site`` is a ``SiteLayout`` (None: only the well-known document).

    ``tags`` is the ``tags`` option (None: every tag of the layout);
    ``well_known`` the managed ref-engines object to merge into the site's
    well-known document (``_site.managed_ref_engines``), or None to leave it
    alone; ``prune_min_age`` keeps younger blobs from prune (stores without
    a site lock); ``registry_view`` the flavour of the registry view to write
    (``_registry.FLAVOURS``: ``files`` for web roots, ``objects`` for S3) or
    None for none; ``registry_roots`` the keys of the objects answering
    ``GET /v2/`` (objects flavour).
    """

    def __init__(self, site=None, *, state: str = 'present', tags=None, force: bool = False, prune: bool = False,
                 prune_min_age: int = 0, well_known: dict = None, exclusive_well_known: bool = False,
                 registry_view: str = None, registry_roots=_registry.ROOT_KEYS):
        if state not in STATES:
            raise PlanError('unknown state %r' % (state,))
        self.site = site
        self.state = state
        self.tags = tags
        self.force = force
        self.prune = prune
        self.prune_min_age = prune_min_age
        self.registry_view = registry_view
        self.registry_roots = tuple(registry_roots)
        self.well_known = None if well_known is None else {'managed': well_known, 'exclusive': exclusive_well_known}


Outcome = namedtuple('Outcome', 'result diff plan done')


def needs_layout(request: Request, has_src: bool) -> bool:
    """Whether the layout is read: to publish, or to take the tags to remove from it."""
    return request.site is not None and has_src and (request.state == 'present' or request.tags is None)


def prepare(request: Request, layout=None, verify: bool = True):
    """Validate the request against the layout: ``(publication or None, index operations)``.

    Without ``verify`` the blobs other than manifests and indexes are left for ``run`` to hash.
    """
    site = request.site
    if site is None:
        return None, []
    if request.state == 'present':
        if layout is None:
            raise PlanError('state is present but src (the OCI image layout to publish) is missing')
        pub = publication(layout, site, tag_pairs(request.tags, layout.tags()), verify=verify)
        ops = index_ops('present', pub['entries'])
    else:
        if request.tags is None and layout is None:
            raise PlanError('state=absent needs the tags to remove (tags), or src to take them from')
        pub = None
        pairs = tag_pairs(request.tags, layout.tags() if layout is not None else None)
        ops = index_ops('absent', tags=[dest for dummy, dest in pairs])
    site.check_templates(pub['blobs'][-1]['digest'] if pub and pub['blobs'] else None)
    return pub, ops


def run(target, request: Request, layout=None, check_mode: bool = False) -> Outcome:
    """The whole sequence (see the module docstring); an ``Outcome`` (result, diff, plan, done)."""
    site = request.site
    # A target that verifies blobs as they arrive and commits none unless all match (the web root on a
    # managed host; an S3 bucket for the blobs it uploads in parts) has the controller hash only the
    # other blobs: each byte hashed once.
    on_arrival = getattr(target, 'verifies_on_arrival', None)
    deferred = on_arrival is not None
    pub, ops = prepare(request, layout, verify=not deferred)
    blobs = pub['blobs'] if pub else []
    view = _registry.for_ops(site, request.registry_view, ops, pub, layout, request.registry_roots) \
        if request.registry_view and site is not None else None
    probed = target.probe(probe_request(site, ops, blobs, prune=request.prune, force=request.force,
                                        well_known=request.well_known is not None, view=view), blobs)
    plan = make_plan(site, ops, pub, probed, describe=target.describe, force=request.force, prune=request.prune,
                     prune_min_age=request.prune_min_age, well_known=request.well_known, view=view)
    sent = set() if check_mode or not deferred else set(b['digest'] for b in plan['send'] if on_arrival(b))
    if deferred and pub is not None:
        layout.validate(pub['sources'], skip=sent)
    done = None
    if not check_mode:
        if plan['changed']:
            taken = layout.stat_blobs(sent) if deferred and sent else None
            done = target.commit(commit_request(plan), LayoutBlobs(layout) if layout is not None else None)
            if taken is not None:
                layout.record_arrived(taken)    # verified there: not hashed here on the next run
        else:
            target.finish()
    return Outcome(summary(site, plan, done), diff(site, plan, done, target.describe), plan, done)


class StoreTarget:
    """A store on this machine as a target of ``run``."""

    def __init__(self, store):
        self.store = store
        # ``run`` leaves the blobs the store verifies as they arrive unhashed here (S3: those sent in parts).
        self.verifies_on_arrival = getattr(store, 'verifies_on_arrival', None)

    def describe(self, key: str) -> str:
        return self.store.describe(key)

    def probe(self, request: dict, blobs=()) -> dict:
        return probe(self.store, request, blobs)

    def commit(self, request: dict, source) -> dict:
        return execute(self.store, request, source)

    def finish(self) -> None:
        self.store.finish()


__all__ = ['Outcome', 'PUBLISH_OPTIONS', 'Request', 'STATES', 'StoreTarget', 'needs_layout', 'prepare', 'run']
