"""What both front doors (Wyoming: server/, HTTP: http/) share: server state and admission, the model pool
and role policy, the voice catalog, speaking text (segments, cleanup, language) and the service errors.
Imports neither front door."""
