"""Integrations with other training frameworks, each behind its optional extra and imported by
its own module only: :mod:`go4align.integrations.lightning` (``pip install 'go4align[lightning]'``)."""
