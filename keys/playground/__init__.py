"""The dashboard's playground: a chat page that calls the real ``/v1/``.

Owns the short-lived playground keys and the page; imports ``keys`` and
``accounts`` only (the catalog through ``keys.selectors``).
"""
