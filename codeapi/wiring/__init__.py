"""What the composition roots share: settings -> one ``Limits`` (limits.py) -> the components that the API
(app.py), the install-time tasks (maintenance.py) and the bench build alike (components.py).

Like app.py, it sees the root Settings; nothing below it does. Nothing imports it but those three.
"""
