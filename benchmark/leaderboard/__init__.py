"""Leaderboards: submissions as untrusted archives, validated, re-scored by the harness, published as a static site.

One module per job: ``submission`` (the format: layout and the manifest's model), ``limits`` (the validator's
limits), ``problems`` (its one error type), ``archive`` (listing and extracting a zip or folder safely), ``images``
(PNG checks before and after decoding), ``validate`` (a submission from an archive), ``board`` (a board folder and
its entries), ``score`` (re-scoring through the harness), ``pack`` (a submission from a run), ``site`` (the static
pages). docs/leaderboard.md describes the format and the commands.
"""
