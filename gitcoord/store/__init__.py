"""The store: a git branch as a compare-and-swap register of trees.

It knows trees, commits, refs and remotes, nothing of what the files mean: it imports
only `gitcoord.errors`, `gitcoord.clock` and `gitcoord.gitio` (tests/test_layers.py
holds it to that). The coordination domain builds on it (`gitcoord.domain.branch`).

- `transaction`: the round loop (read the tip, `decide`, write, compare-and-swap, back
  off and go again; settle a push whose reply was lost)
- `remote`: fetching into the private mirror ref, the push with an explicit lease
- `trees`: read-only views of a tree; new trees and commits, written in process
- `turns`: the per-clone (or machine) turn, and the backoff after a lost race
- `parsecache`: what files parse to, by blob id (the parser is given, not known)
- `pending`, `forge`: what a session owes the branch; pull-request links
"""
