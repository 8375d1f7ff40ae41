# -*- coding: utf-8 -*-
# Copyright: contributors to the oci.discovery collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a publish reports: compact module results and Ansible diffs, for a plan or a commit.

Results speak the user's language: tags added, updated, removed, the
digests before and after for each changed tag, blob and byte counts; never
a list of every file.

No Ansible imports here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

from ansible_collections.oci.discovery.plugins.module_utils import _registry
from ansible_collections.oci.discovery.plugins.module_utils._spec import WELL_KNOWN_KEY


def size_text(n: int) -> str:
    """``n`` bytes in a human unit (bytes, KiB, MiB, GiB)."""
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return ('%d %s' % (n, unit)) if unit == 'bytes' else ('%.1f %s' % (n, unit))
        n /= 1024.0


def pretty_json(obj) -> str:
    """A JSON object as indented text for a diff ('' for None)."""
    return '' if obj is None else json.dumps(obj, indent=2, sort_keys=True) + '\n'


def summary(site, plan: dict, done: dict = None) -> dict:
    """The module result keys for a plan (check mode, or nothing to do) or for what was done."""
    now = done or plan
    result = {'changed': now['changed']}
    if site is not None:
        changes = now['changes']
        result.update({
            'name': site.name.family,
            'index': site.index_key,
            'index_url': site.index_url,
            'cas_template': site.cas_template,
            'tags_added': changes['added'],
            'tags_updated': changes['updated'],
            'tags_removed': changes['removed'],
            'tags_unchanged': changes['unchanged'],
            'tag_changes': now['tag_changes'],
            'digests': plan['digests'],
            'blobs_sent': done['sent'] if done else len(plan['send']),
            'bytes_sent': done['sent_bytes'] if done else plan['send_bytes'],
            'blobs_present': len(plan['require']) - len(plan['send']),
        })
        pruned = done['prune'] if done else plan['prune']
        if pruned is not None:
            result['blobs_pruned'] = pruned['blobs']
            result['bytes_pruned'] = pruned['bytes']
            if (plan.get('registry') or {}).get('name'):
                result['registry_objects_pruned'] = pruned.get('registry_objects', 0)
        if changes.get('replaced_invalid'):
            result['replaced_invalid_index'] = changes['replaced_invalid']
        result.update(_registry.summary(plan.get('registry'), done.get('registry') if done else None))
        warnings = list((plan.get('registry') or {}).get('warnings') or [])
        if plan.get('corrupt'):
            warnings.append('%d blob(s) in the store did not match their digest and %s: %s' % (
                len(plan['corrupt']), 'were replaced' if done else 'are to be replaced', ', '.join(plan['corrupt'])))
        if warnings:
            result['warnings'] = warnings
    well_known = now.get('well_known')
    if well_known is not None:
        result['well_known_changed'] = well_known['changed']
        result['well_known'] = well_known['after']
    return result


def diff(site, plan: dict, done: dict = None, describe=None) -> list:
    """An Ansible diff: the family's index as ``tag digest`` lines, the changed tags and the counts,
    and the well-known document when it changes."""
    now = done or plan
    differences = []
    if site is not None:
        sent = done['sent'] if done else len(plan['send'])
        sent_bytes = done['sent_bytes'] if done else plan['send_bytes']
        lines = ['%s: %d blob(s), %s %s' % (site.name.family, sent, size_text(sent_bytes),
                                            'sent' if done else 'to send'),
                 '%d referenced blob(s) already present' % (len(plan['require']) - len(plan['send']))]
        for tag, change in sorted(now['tag_changes'].items()):
            lines.append('tag %s: %s -> %s' % (tag, ', '.join(change['before']) or '(none)',
                                               ', '.join(change['after']) or '(removed)'))
        pruned = done['prune'] if done else plan['prune']
        if pruned is not None:
            lines.append('%d unreferenced blob(s), %s %s%s'
                         % (pruned['blobs'], size_text(pruned['bytes']), 'pruned' if done else 'to prune',
                            ', and %d registry view object(s) no tag reaches' % pruned['registry_objects']
                            if pruned.get('registry_objects') else ''))
        lines.extend(_registry.diff_lines(plan.get('registry'), done.get('registry') if done else None))
        differences.extend([
            {'before_header': '%s (tags)' % site.index_url, 'after_header': '%s (tags)' % site.index_url,
             'before': now['diff']['before'], 'after': now['diff']['after']},
            {'prepared': '\n'.join(lines)},
        ])
    well_known = now.get('well_known')
    if well_known is not None and well_known['changed']:
        header = describe(WELL_KNOWN_KEY) if describe else WELL_KNOWN_KEY
        differences.append({'before_header': header, 'after_header': header,
                            'before': pretty_json(well_known['before']), 'after': pretty_json(well_known['after'])})
    return differences


__all__ = ['diff', 'pretty_json', 'size_text', 'summary']
